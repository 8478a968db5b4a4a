/**
 * ConfigWatcher on the real file system: a config file whose folders do not exist yet is
 * picked up when it appears, edits (in place or by an atomic rename) are reported once after
 * the quiet time, and a deleted folder moves the watch up and back down again.
 */
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigWatcher } from '../src/daemon/files/config-watcher.js';
import { Cleanup, makeHome, waitFor } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const SETTLE_MS = 50;

function watcherFor(path: string): { watcher: ConfigWatcher; changes: () => number } {
  let changes = 0;
  const watcher = new ConfigWatcher({ path, settleMs: SETTLE_MS, onchange: () => void changes++ });
  cleanup.add(() => watcher.close());
  watcher.start();
  return { watcher, changes: () => changes };
}

/** Long enough for any event of an earlier step to have settled and been counted. */
const quiet = () => new Promise((r) => setTimeout(r, SETTLE_MS * 6));

// Each test watches a file in its own temp dir, so they run side by side.
describe('ConfigWatcher on the real file system', { concurrency: 3 }, () => {
  test('a file three folders below the nearest existing one is picked up when it appears, then each edit once', async () => {
    const root = makeHome(cleanup);
    const folder = join(root, 'a', 'b', 'c');
    const file = join(folder, 'config.json');
    const { watcher, changes } = watcherFor(file);
    assert.equal(watcher.watching, root);
    await quiet();
    assert.equal(changes(), 0, 'starting to watch is not a change');

    mkdirSync(folder, { recursive: true });
    await waitFor(() => watcher.watching === folder, 'the watch down in the file folder', 5_000);
    writeFileSync(file, '{}');
    await waitFor(() => changes() >= 1, 'a change once the file appeared', 5_000);
    await quiet();
    const afterCreate = changes();

    // An editor's atomic save: write a temporary file, rename it over the config.
    writeFileSync(join(folder, '.config.json.tmp'), '{"mcpServers": {}}');
    renameSync(join(folder, '.config.json.tmp'), file);
    await waitFor(() => changes() > afterCreate, 'a change after the atomic save', 5_000);
    await quiet();
    assert.equal(changes(), afterCreate + 1, 'one change for one save (debounced)');

    // Another file in the same folder is not the config.
    writeFileSync(join(folder, 'other.json'), '{}');
    await quiet();
    assert.equal(changes(), afterCreate + 1);
  });

  test('a deleted folder moves the watch up (a change: the file is gone) and a new one brings it back down', async () => {
    const root = makeHome(cleanup);
    const folder = join(root, 'cfg');
    const file = join(folder, 'config.json');
    mkdirSync(folder);
    writeFileSync(file, '{}');
    const { watcher, changes } = watcherFor(file);
    assert.equal(watcher.watching, folder);

    rmSync(folder, { recursive: true });
    await waitFor(() => watcher.watching === root, 'the watch moved up', 5_000);
    await waitFor(() => changes() >= 1, 'a change for the deleted file', 5_000);
    await quiet();
    const afterDelete = changes();

    mkdirSync(folder);
    await waitFor(() => watcher.watching === folder, 'the watch back in the new folder', 5_000);
    writeFileSync(file, '{}');
    await waitFor(() => changes() > afterDelete, 'a change for the new file', 5_000);

    watcher.close();
    assert.equal(watcher.watching, undefined);
    const closedAt = changes();
    writeFileSync(file, '{"mcpServers": {}}');
    await quiet();
    assert.equal(changes(), closedAt, 'nothing after close()');
  });

  test('a file that is a chain of links is followed to its target: its edits count, and a link moved leaves the old target', async () => {
    const root = makeHome(cleanup);
    mkdirSync(join(root, 'dotfiles'));
    mkdirSync(join(root, 'cfg'));
    const target = join(root, 'dotfiles', 'exai-ws.json');
    const middle = join(root, 'dotfiles', 'current.json');
    const file = join(root, 'cfg', 'config.json');
    writeFileSync(target, '{}');
    symlinkSync(target, middle);
    symlinkSync(join('..', 'dotfiles', 'current.json'), file);
    const { watcher, changes } = watcherFor(file);
    assert.equal(watcher.watching, join(root, 'cfg'));

    writeFileSync(target, '{"mcpServers": {}}');
    await waitFor(() => changes() >= 1, 'a change for an edit of the target two links away', 5_000);
    await quiet();
    const afterEdit = changes();

    // The first link pointed at another file: the old target is not the config any more.
    const other = join(root, 'other.json');
    writeFileSync(other, '{}');
    rmSync(file);
    symlinkSync(other, file);
    await waitFor(() => changes() > afterEdit, 'a change for the link pointed elsewhere', 5_000);
    await quiet();
    const afterMove = changes();
    writeFileSync(target, '{"mcpServers": {"a": {}}}');
    await quiet();
    assert.equal(changes(), afterMove, 'the old target is no longer watched');
    writeFileSync(other, '{"mcpServers": {}}');
    await waitFor(() => changes() > afterMove, 'a change for an edit of the new target', 5_000);
  });
});
