/** What every CLI command that starts sessions needs: policy, driver, audit log. */
import { AuditLog, defaultAuditFile } from '../audit';
import { AuditWriteError } from '../sessions';
import { BwrapDriver } from '../drivers/bwrap/driver';
import { loadWorkspacePolicy } from '../policy/load';
import { loadPolicyFile, Policy, PolicyDocument, resolvePolicy } from '../policy/policy';


export interface PolicyInputs {
  workspace: string;
  policyFile?: string;
  overrides?: PolicyDocument;
}

/** Defaults, then the workspace's policy file, then --policy FILE, then flags. */
export function policyFor(inputs: PolicyInputs): Policy {
  const docs: (PolicyDocument | undefined)[] = [loadWorkspacePolicy(inputs.workspace, (m) => process.stderr.write(`airlock: warning: ${m}\n`))];
  if (inputs.policyFile) docs.push(loadPolicyFile(inputs.policyFile));
  docs.push(inputs.overrides);
  return resolvePolicy(...docs);
}

export function openAudit(opts: { holdLock?: boolean } = {}): AuditLog {
  try {
    return AuditLog.open(opts);
  } catch (e) {
    throw new AuditWriteError(defaultAuditFile(), e, 'was not started');
  }
}

export function defaultDriver(): BwrapDriver {
  return new BwrapDriver(process.env);
}
