/**
 * Policy is data: a validated document built from defaults + a policy file +
 * per-session overrides, then passed into the parts that enforce it. Nothing here
 * keeps module-level mutable state.
 */
import * as fs from 'node:fs';
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import schema from './airlock.schema.json';
import { parseRule } from '../egress/rules';

/** A policy document as written by a person (every field optional). */
export interface PolicyDocument {
  version?: 1;
  env?: { pass?: string[]; set?: Record<string, string> };
  filesystem?: {
    mask?: string[];
    readOnly?: string[];
    hostReadOnly?: string[];
    maskScanLimit?: number;
  };
  limits?: Partial<Limits>;
  network?: Partial<NetworkPolicy>;
}

export interface Limits {
  lifetimeSeconds: number;
  idleSeconds: number;
  pids: number;
  memoryMiB: number;
  cpuPercent: number;
  tmpfsMiB: number;
  fileSizeMiB: number;
}

export interface NetworkPolicy {
  mode: 'proxy' | 'none';
  allow: string[];
  deny: string[];
  allowAll: boolean;
  registries: boolean;
  maxConnections: number;
  maxMiB: number;
}

export const DEFAULT_NETWORK: Readonly<NetworkPolicy> = {
  mode: 'proxy', allow: [], deny: [], allowAll: false, registries: true, maxConnections: 512, maxMiB: 16384,
};

/** The policy a session runs under: every field present. */
export interface Policy {
  env: { pass: string[]; set: Record<string, string> };
  filesystem: { mask: string[]; readOnly: string[]; hostReadOnly: string[]; maskScanLimit: number };
  limits: Limits;
  network: NetworkPolicy;
}

/**
 * Secret-bearing files an agent must never read, even "to debug". Masked files look
 * empty; masked directories look empty. Templates that carry no values stay visible.
 */
export const DEFAULT_MASK: readonly string[] = [
  '.env', '.env.*', '!.env.example', '!.env.sample', '!.env.template',
  '*.pem', '*.key', '*.p12', '*.pfx',
  'id_rsa*', 'id_ed25519*', 'id_ecdsa*', 'id_dsa*',
  '.npmrc', '.pypirc', '.netrc', '.git-credentials',
  'credentials*.json', 'service-account*.json', '*.tfstate*',
  '.aws/', '.ssh/', '.kube/', '.gnupg/', '.docker/',
];

/**
 * Paths the host executes or trusts later (git hooks and config, editor tasks and
 * settings, direnv, MCP and agent configs). Writing them is how a sandboxed process
 * would get code run outside the sandbox, so they are read-only and, when absent,
 * cannot be created.
 */
export const DEFAULT_READ_ONLY: readonly string[] = [
  // At the root (literal: protected even while absent) and in nested repositories.
  '.git/hooks/', '.git/config', '.git/commondir', '**/.git/hooks/', '**/.git/config', '**/.git/commondir',
  '**/.git/modules/**/hooks/', '**/.git/modules/**/config', '**/.git/worktrees/*/commondir',
  '.vscode/', '.idea/', '.devcontainer/', '.envrc', '.mcp.json', '.claude/', '.cursor/', '.husky/',
];

export const DEFAULT_LIMITS: Readonly<Limits> = {
  lifetimeSeconds: 8 * 3600,
  idleSeconds: 3600,
  pids: 1024,
  memoryMiB: 4096,
  cpuPercent: 200,
  tmpfsMiB: 1024,
  fileSizeMiB: 8192,
};

export class PolicyError extends Error {
  constructor(message: string, readonly source: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Compiled on first use (~90 ms): most CLI commands never validate a policy. */
let validator: ValidateFunction<PolicyDocument> | undefined;
const documentValidator = (): ValidateFunction<PolicyDocument> => (validator ??= new Ajv({ allErrors: true, strict: true }).compile<PolicyDocument>(schema));

function describe(err: ErrorObject): string {
  const where = err.instancePath === '' ? '(top level)' : err.instancePath.slice(1).replace(/\//g, '.');
  switch (err.keyword) {
    case 'additionalProperties':
      return `${where === '(top level)' ? '' : where + '.'}${String(err.params.additionalProperty)}: unknown field (allowed: ${allowedFields(err.schemaPath)})`;
    case 'enum':
      return `${where}: must be one of ${(err.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `${where}: must be ${JSON.stringify(err.params.allowedValue)}`;
    default:
      return `${where}: ${err.message ?? 'is invalid'}`;
  }
}

function allowedFields(schemaPath: string): string {
  // schemaPath looks like "#/properties/limits/additionalProperties"
  let node: unknown = schema;
  for (const part of schemaPath.replace(/^#\//, '').split('/').slice(0, -1)) {
    node = (node as Record<string, unknown>)[part];
  }
  const props = (node as { properties?: Record<string, unknown> }).properties ?? {};
  return Object.keys(props).filter((k) => k !== '$schema').join(', ');
}

/** Validates a parsed document; throws a PolicyError naming every bad field. */
export function validatePolicyDocument(doc: unknown, source = 'policy'): PolicyDocument {
  const validate = documentValidator();
  if (!validate(doc)) {
    const problems = (validate.errors ?? []).map(describe);
    throw new PolicyError(`invalid policy ${source}: ${[...new Set(problems)].join('; ')}`, source);
  }
  for (const [list, rules] of [['allow', doc.network?.allow], ['deny', doc.network?.deny]] as const) {
    for (const r of rules ?? []) {
      try {
        parseRule(r);
      } catch (e) {
        throw new PolicyError(`invalid policy ${source}: network.${list}: ${(e as Error).message}`, source);
      }
    }
  }
  return doc;
}

/** Reads and validates a policy file. */
export function loadPolicyFile(file: string): PolicyDocument {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PolicyError(
      code === 'ENOENT' ? `policy file ${file} not found` : `cannot read policy file ${file}: ${(e as Error).message}`,
      file,
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new PolicyError(`policy file ${file} is not valid JSON: ${(e as Error).message}`, file);
  }
  return validatePolicyDocument(doc, file);
}

/** Defaults, then each document in order: lists extend, scalars override. */
export function resolvePolicy(...docs: (PolicyDocument | undefined)[]): Policy {
  const p: Policy = {
    env: { pass: [], set: {} },
    filesystem: { mask: [...DEFAULT_MASK], readOnly: [...DEFAULT_READ_ONLY], hostReadOnly: [], maskScanLimit: 500_000 },
    limits: { ...DEFAULT_LIMITS },
    network: { ...DEFAULT_NETWORK, allow: [], deny: [] },
  };
  for (const doc of docs) {
    if (!doc) continue;
    validatePolicyDocument(doc);
    p.env.pass.push(...(doc.env?.pass ?? []));
    Object.assign(p.env.set, doc.env?.set ?? {});
    p.filesystem.mask.push(...(doc.filesystem?.mask ?? []));
    p.filesystem.readOnly.push(...(doc.filesystem?.readOnly ?? []));
    p.filesystem.hostReadOnly.push(...(doc.filesystem?.hostReadOnly ?? []));
    if (doc.filesystem?.maskScanLimit !== undefined) p.filesystem.maskScanLimit = doc.filesystem.maskScanLimit;
    Object.assign(p.limits, doc.limits ?? {});
    const { allow, deny, ...scalars } = doc.network ?? {};
    p.network.allow.push(...(allow ?? []));
    p.network.deny.push(...(deny ?? []));
    Object.assign(p.network, scalars);
  }
  p.env.pass = [...new Set(p.env.pass)];
  p.network.allow = [...new Set(p.network.allow)];
  p.network.deny = [...new Set(p.network.deny)];
  return p;
}

/** What the audit log records about a policy: enough to review, no values. */
export function summarizePolicy(p: Policy): Record<string, unknown> {
  return {
    envPass: p.env.pass,
    envSet: Object.keys(p.env.set),
    mask: p.filesystem.mask.length,
    readOnly: p.filesystem.readOnly.length,
    hostReadOnly: p.filesystem.hostReadOnly,
    limits: p.limits,
    network: {
      mode: p.network.mode, allow: p.network.allow, deny: p.network.deny, registries: p.network.registries,
      ...(p.network.allowAll ? { allowAll: true } : {}),
    },
  };
}
