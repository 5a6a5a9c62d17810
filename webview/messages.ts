/** The messages between the Airlock panel's webview and the extension, both ways. */
import type { RuntimeEvent } from '../runtime/protocol';
import type { Snapshot } from './state';

/** Extension → webview. */
export type ToPanel =
  | { type: 'snapshot'; snapshot: Snapshot }
  | { type: 'events'; events: RuntimeEvent[] }
  | { type: 'connection'; state: 'connecting' | 'connected' | 'disconnected' }
  | { type: 'notice'; level: 'info' | 'error'; text: string };

/** Webview → extension: what a person clicked. Every one is checked again there. */
export type FromPanel =
  | { type: 'ready' }
  | { type: 'kill'; sessionId: string }
  | { type: 'allow'; sessionId: string; rule: string; minutes: number }
  | { type: 'grant'; sessionId: string }
  | { type: 'revoke'; sessionId: string; name: string }
  | { type: 'decide'; requestId: string; approve: boolean; minutes?: number };
