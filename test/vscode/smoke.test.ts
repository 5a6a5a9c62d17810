/**
 * The first test inside a real VS Code (code-server's extension host, run by
 * scripts/test-vscode.mjs): the extension is there and activates. Real behaviour tests
 * go in their own test/vscode/*.test.ts files.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'mocha';
import * as vscode from 'vscode';

const EXTENSION_ID = 'airlock-dev.airlock';

describe('Airlock in a real VS Code', () => {
  it('is installed as airlock-dev.airlock and activates', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `${EXTENSION_ID} is not among the extensions; loaded: ${vscode.extensions.all.filter((e) => !e.id.startsWith('vscode.')).map((e) => e.id).join(', ') || 'none but built-ins'}`);
    await ext.activate();
    assert.equal(ext.isActive, true);
  });

  it("runs in VS Code's own Node extension host behind a browser workbench", () => {
    console.log(`extension host: ${process.execPath} ${process.version}; VS Code ${vscode.version} (${vscode.env.appName}, ${vscode.env.appHost})`);
    assert.equal(vscode.env.uiKind, vscode.UIKind.Web, 'the workbench should be the browser one (code-server)');
    assert.equal(process.versions.electron, undefined, 'the extension host should be plain Node, not Electron');
    assert.equal(process.version, `v${process.versions.node}`);
    assert.ok(Number(process.versions.node.split('.')[0]) >= 22, `VS Code ${vscode.version} runs extensions on Node 22 or newer, this is ${process.version}`);
    assert.ok(fs.statSync(process.execPath).isFile(), `process.execPath ${process.execPath} is not a file`);
  });
});
