/**
 * A question asked in several steps (name, value, mode, minutes…) with VS Code's quick
 * input kept on screen from the first step to the last: each step's box is shown before
 * the previous one is let go. Asked with one showInputBox after another, the box closed
 * between steps and VS Code handed focus back to where the flow started; from a webview
 * that hand-back is asynchronous and, under load, landed after the next box had opened:
 * the box lost focus (and, closing on focus loss, ended the flow without a word).
 */
import * as vscode from 'vscode';

export interface InputStep {
  title: string;
  prompt?: string;
  value?: string;
  password?: boolean;
  /** A message while the text is not acceptable; undefined when it is. */
  validate?: (value: string) => string | undefined;
}

export class Steps implements vscode.Disposable {
  private current: vscode.QuickInput | undefined;

  /** The text typed, or undefined when the person pressed Escape. */
  input(step: InputStep): Promise<string | undefined> {
    const box = vscode.window.createInputBox();
    Object.assign(box, { title: step.title, prompt: step.prompt, value: step.value ?? '', password: !!step.password, ignoreFocusOut: true });
    const check = (): string | undefined => (box.validationMessage = step.validate?.(box.value));
    box.onDidChangeValue(check);
    return this.ask(box, (done) => box.onDidAccept(() => {
      if (check() === undefined) done(box.value);
    }));
  }

  /** The label picked, or undefined when the person pressed Escape. */
  pick(title: string, labels: string[]): Promise<string | undefined> {
    const pick = vscode.window.createQuickPick();
    Object.assign(pick, { title, items: labels.map((label) => ({ label })), ignoreFocusOut: true });
    return this.ask(pick, (done) => pick.onDidAccept(() => {
      const chosen = pick.selectedItems[0] ?? pick.activeItems[0];
      if (chosen) done(chosen.label);
    }));
  }

  /** Keeps the last box on screen, busy, while the caller works before its next step. */
  busy(): void {
    if (this.current) {
      this.current.busy = true;
      this.current.enabled = false;
    }
  }

  dispose(): void {
    this.current?.dispose();
    this.current = undefined;
  }

  private ask<T extends vscode.QuickInput>(input: T, onAccept: (done: (v: string) => void) => vscode.Disposable): Promise<string | undefined> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (v: string | undefined): void => {
        if (settled) return;
        settled = true;
        if (v === undefined) this.dispose();
        else this.busy();
        resolve(v);
      };
      onAccept(done);
      input.onDidHide(() => done(undefined));
      input.show(); // replaces the previous step's box without closing the quick input
      this.current?.dispose();
      this.current = input;
    });
  }
}
