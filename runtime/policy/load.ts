/** Where policy documents come from on disk. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadPolicyFile, PolicyDocument } from './policy';

/** A workspace's own policy file, maintained from VS Code ("Airlock: Open Policy"). */
export const WORKSPACE_POLICY = '.vscode/airlock.json';

/** The workspace's policy document, if it has one (read-only inside its sandboxes). */
export function loadWorkspacePolicy(workspace: string): PolicyDocument | undefined {
  const file = path.join(path.resolve(workspace), WORKSPACE_POLICY);
  return fs.existsSync(file) ? loadPolicyFile(file) : undefined;
}
