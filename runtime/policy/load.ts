/** Where policy documents come from on disk. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_NETWORK, loadPolicyFile, PolicyDocument } from './policy';

/** A workspace's own policy file, maintained from VS Code ("Airlock: Open Policy"). */
export const WORKSPACE_POLICY = '.vscode/airlock.json';

/**
 * Network fields a workspace's own file may not set: they would widen egress. A cloned
 * repository ships its `.vscode/airlock.json`, and a file that could allow its own
 * attacker's host (or every host) would turn "postinstall posts your code out" back on.
 * Such rules belong in the person's own --policy file, flags or VS Code settings.
 */
export const WORKSPACE_NETWORK_IGNORED = ['allow', 'allowAll'] as const;

/**
 * The workspace's policy document, if it has one (read-only inside its sandboxes),
 * without the fields in WORKSPACE_NETWORK_IGNORED: a workspace file may only tighten
 * the network (deny rules, mode 'none', registries off, lower caps).
 */
export function loadWorkspacePolicy(workspace: string): PolicyDocument | undefined {
  const file = path.join(path.resolve(workspace), WORKSPACE_POLICY);
  if (!fs.existsSync(file)) return undefined;
  const doc = loadPolicyFile(file);
  if (!doc.network) return doc;
  const network = { ...doc.network };
  for (const k of WORKSPACE_NETWORK_IGNORED) delete network[k];
  // Caps only lower: a value above the default is ignored too.
  if ((network.maxConnections ?? 0) > DEFAULT_NETWORK.maxConnections) delete network.maxConnections;
  if ((network.maxMiB ?? 0) > DEFAULT_NETWORK.maxMiB) delete network.maxMiB;
  return { ...doc, network };
}
