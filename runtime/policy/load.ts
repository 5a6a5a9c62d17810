/** Where policy documents come from on disk. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_LIMITS, DEFAULT_NETWORK, Limits, loadPolicyFile, PolicyDocument } from './policy';

/** A workspace's own policy file, maintained from VS Code ("Airlock: Open Policy"). */
export const WORKSPACE_POLICY = '.vscode/airlock.json';

/**
 * What a workspace's own policy file may not do, because the file comes with the code:
 * a cloned repository ships its `.vscode/airlock.json`, and a file that could allow its
 * author's host, pass the person's environment variables in, unmask `.env`, show more
 * of the host or raise limits would turn the sandbox against its user. So the file may
 * only tighten: more masks, more read-only paths, deny rules, mode 'none', registries
 * off, lower limits and caps, variables it sets itself. Everything else is ignored and
 * named (warnings): such rules belong in the person's own --policy file, flags, or the
 * `airlock.policy` setting in VS Code.
 */
export function restrictWorkspacePolicy(doc: PolicyDocument): { doc: PolicyDocument; ignored: string[] } {
  const ignored: string[] = [];
  const out: PolicyDocument = { ...doc };
  if (doc.env?.pass?.length) {
    ignored.push(`env.pass (${doc.env.pass.join(', ')})`);
    out.env = { ...doc.env };
    delete out.env.pass;
  }
  if (doc.filesystem) {
    const fsDoc = { ...doc.filesystem };
    for (const k of ['mask', 'readOnly'] as const) {
      const negated = (fsDoc[k] ?? []).filter((x) => x.startsWith('!'));
      if (negated.length) {
        ignored.push(`filesystem.${k} exceptions (${negated.join(', ')})`);
        fsDoc[k] = fsDoc[k]!.filter((x) => !x.startsWith('!'));
      }
    }
    if (fsDoc.hostReadOnly?.length) {
      ignored.push(`filesystem.hostReadOnly (${fsDoc.hostReadOnly.join(', ')})`);
      delete fsDoc.hostReadOnly;
    }
    out.filesystem = fsDoc;
  }
  if (doc.limits) {
    const limits = { ...doc.limits };
    for (const [k, v] of Object.entries(limits) as [keyof Limits, number][]) {
      if (v > DEFAULT_LIMITS[k]) {
        ignored.push(`limits.${k} above the default (${v} > ${DEFAULT_LIMITS[k]})`);
        delete limits[k];
      }
    }
    out.limits = limits;
  }
  if (doc.network) {
    const network = { ...doc.network };
    if (network.allow?.length) ignored.push(`network.allow (${network.allow.join(', ')})`);
    if (network.allowAll) ignored.push('network.allowAll');
    delete network.allow;
    delete network.allowAll;
    for (const k of ['maxConnections', 'maxMiB'] as const) {
      if ((network[k] ?? 0) > DEFAULT_NETWORK[k]) {
        ignored.push(`network.${k} above the default (${network[k]} > ${DEFAULT_NETWORK[k]})`);
        delete network[k];
      }
    }
    out.network = network;
  }
  return { doc: out, ignored };
}

/**
 * The workspace's policy document, if it has one (read-only inside its sandboxes),
 * restricted to what tightens (restrictWorkspacePolicy). ONIGNORED hears what was
 * left out, to tell the person.
 */
export function loadWorkspacePolicy(workspace: string, onIgnored?: (message: string) => void): PolicyDocument | undefined {
  const file = path.join(path.resolve(workspace), WORKSPACE_POLICY);
  if (!fs.existsSync(file)) return undefined;
  const { doc, ignored } = restrictWorkspacePolicy(loadPolicyFile(file));
  if (ignored.length) onIgnored?.(`ignored in ${file} (a workspace's own policy may only tighten; put these in your own --policy file or the airlock.policy setting): ${ignored.join('; ')}`);
  return doc;
}
