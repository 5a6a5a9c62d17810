/** What every CLI command that starts sessions needs: policy, driver, audit log. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AuditLog, defaultAuditFile } from '../audit';
import { AuditWriteError } from '../sessions';
import { BwrapDriver } from '../drivers/bwrap/driver';
import { loadPolicyFile, Policy, PolicyDocument, resolvePolicy } from '../policy/policy';

/** A workspace's own policy file, maintained from VS Code ("Airlock: Open Policy"). */
export const WORKSPACE_POLICY = '.vscode/airlock.json';

export interface PolicyInputs {
  workspace: string;
  policyFile?: string;
  overrides?: PolicyDocument;
}

/** Defaults, then the workspace's policy file, then --policy FILE, then flags. */
export function policyFor(inputs: PolicyInputs): Policy {
  const docs: (PolicyDocument | undefined)[] = [];
  const wsFile = path.join(path.resolve(inputs.workspace), WORKSPACE_POLICY);
  if (fs.existsSync(wsFile)) docs.push(loadPolicyFile(wsFile));
  if (inputs.policyFile) docs.push(loadPolicyFile(inputs.policyFile));
  docs.push(inputs.overrides);
  return resolvePolicy(...docs);
}

export function openAudit(): AuditLog {
  try {
    return AuditLog.open();
  } catch (e) {
    throw new AuditWriteError(defaultAuditFile(), e, 'was not started');
  }
}

export function defaultDriver(): BwrapDriver {
  return new BwrapDriver(process.env);
}
