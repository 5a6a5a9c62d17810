/**
 * The runtime-wide set of values to redact: one Redactor for every byte and record
 * that leaves the runtime (terminal streams, exec results, events, the audit log).
 * Each session contributes the values it was granted; one shared set means output of
 * any session is scrubbed of every granted value, which can only redact more.
 */
import { RedactionSecret, Redactor } from './redact';

export class RedactionSet {
  readonly redactor: Redactor;
  private readonly owners = new Map<string, RedactionSecret[]>();

  constructor(opts: { detectors?: boolean } = {}) {
    this.redactor = new Redactor({ detectors: opts.detectors ?? true });
  }

  /** Replaces the values OWNER (a session id) contributes. */
  set(owner: string, list: RedactionSecret[]): void {
    if (list.length) this.owners.set(owner, list);
    else this.owners.delete(owner);
    this.redactor.setSecrets([...this.owners.values()].flat());
  }

  /** Forgets OWNER's values (its session ended: nothing of it can print any more). */
  delete(owner: string): void {
    if (this.owners.delete(owner)) this.redactor.setSecrets([...this.owners.values()].flat());
  }

  /** A deep copy of a JSON-like value with every string redacted. */
  value<T>(v: T): T {
    return this.redactor.redactValue(v);
  }

  text(s: string): string {
    return this.redactor.redactString(s);
  }
}
