/**
 * The interactive shell of a sandbox, with VS Code's shell integration: which shell to
 * start and how, the integration files every sandbox carries, and the parser for what
 * the shell reports back (./osc633.ts).
 */
import { BASH_INTEGRATION, ZSH_RC } from './scripts';

export { CommandTracker, MAX_COMMAND_LINE_BYTES, MAX_CWD_BYTES, MAX_OSC_BYTES, Osc633Parser, TRUNCATED_MARKER } from './osc633';
export type { CommandEvent, ShellEvent } from './osc633';

/**
 * Where drivers put shellFiles() inside a sandbox (the bwrap driver: its read-only
 * /run/airlock mount). Paths in argv and env below are as seen from inside.
 */
export const SHELL_DIR = '/run/airlock/shell';
export const BASH_RCFILE = `${SHELL_DIR}/bash-integration.sh`;
export const ZSH_ZDOTDIR = `${SHELL_DIR}/zsh`;

/** The integration files, by path relative to SHELL_DIR. Nothing in them is secret. */
export function shellFiles(): Record<string, string> {
  return { 'bash-integration.sh': BASH_INTEGRATION, 'zsh/.zshrc': ZSH_RC };
}

export interface InteractiveShell {
  argv: string[];
  /** Variables to add to the session's environment for this process. */
  env: Record<string, string>;
  shell: 'bash' | 'zsh' | 'sh';
  /** Whether the shell reports commands with OSC 633 (sh does not). */
  integration: boolean;
}

export interface InteractiveShellOptions {
  /** Whether PATH exists inside the sandbox. */
  available: (path: string) => boolean;
  /** zsh when it is installed; bash otherwise (the default). */
  prefer?: 'bash' | 'zsh';
}

function first(available: (p: string) => boolean, paths: string[]): string | undefined {
  return paths.find((p) => available(p));
}

/**
 * The command for an interactive shell inside the sandbox: bash with the integration
 * rcfile (which reads /etc/bash.bashrc and ~/.bashrc itself), or zsh with ZDOTDIR
 * pointing at the integration .zshrc (which reads the user's), or plain `sh -i`.
 */
export function interactiveShell(opts: InteractiveShellOptions): InteractiveShell {
  const bash = first(opts.available, ['/bin/bash', '/usr/bin/bash']);
  const zsh = first(opts.available, ['/bin/zsh', '/usr/bin/zsh']);
  if (zsh && (opts.prefer === 'zsh' || !bash)) {
    return { argv: [zsh, '-i'], env: { ZDOTDIR: ZSH_ZDOTDIR }, shell: 'zsh', integration: true };
  }
  if (bash) return { argv: [bash, '--rcfile', BASH_RCFILE, '-i'], env: {}, shell: 'bash', integration: true };
  return { argv: ['/bin/sh', '-i'], env: {}, shell: 'sh', integration: false };
}
