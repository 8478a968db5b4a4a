/**
 * A servers file that is not valid JSON never stops a start (issue 20): the daemon serves its
 * built-in tools, `status` (table and --json), `/health` and the log name the line and column of
 * the mistake, and the file applies as soon as it is fixed, in the windows already open. A live
 * edit that breaks the file keeps the running servers, and its error names the line too. Also
 * the scan behind "line, column" (hosting/json-syntax.ts), on the mistakes people make.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { MAX_DEPTH, findJsonSyntaxError } from '../src/hosting/json-syntax.js';
import type { StatusJson } from '../src/commands/status-view.js';
import { Cleanup, getHealth, logPath, makeHome, readJsonLines, runCli, startDaemon, textOf, waitFor } from './helpers.js';
import { memoryEntry, startHostingDaemon } from './fixtures/hosted-servers.js';
import { connectWs } from './fixtures/ws-client.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** The file as a person writes it, with one trailing comma after the last entry (line 4). */
function withTrailingComma(home: string): string {
  return ['{', '  "mcpServers": {', `    "memory": ${JSON.stringify(memoryEntry(home))}`, '  },', '}', ''].join('\n');
}
/**
 * Merged lists wait for servers still starting (by default at most 2 s, which a server-memory
 * start can pass on a loaded machine): what these tests list is the config's effect, not timing.
 */
const LISTS_WAIT = { EXAI_WS_LIST_WAIT_MS: '0' };

// Each test has its own daemon, home and processes: they run side by side. Windows are direct
// WebSocket SDK clients: the config is the daemon's, whatever carries the session.
describe('broken config', { concurrency: true }, () => {
  test('a trailing comma at start: built-in tools work, status names line and column, fixing the file brings its servers without a restart', async () => {
    const home = makeHome(cleanup);
    const config = join(home, 'config.json');
    const broken = withTrailingComma(home);
    writeFileSync(config, broken);
    // `exai-ws daemon` itself, as a shim's auto-start or a user runs it.
    const daemon = await startDaemon(cleanup, { home, plain: true, env: LISTS_WAIT });

    const { client } = await connectWs(cleanup, daemon);
    let listChanged = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void listChanged++);
    const version = JSON.parse(textOf(await client.callTool({ name: 'version', arguments: {} }))) as { pid: number };
    assert.equal(version.pid, daemon.pid, 'the built-in tools are served');
    const before = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(before.includes('version'));
    assert.ok(!before.some((name) => name.startsWith('memory__')), before.join(', '));

    // Line 4, column 4: the comma after the "mcpServers" object, the one to delete.
    const where = /config\.json is not valid JSON: line 4, column 4: a trailing comma: JSON allows no comma before '\}'/;
    assert.equal(broken.split('\n')[3]?.[3], ',', 'the fixture puts the comma where the test says');
    const [json, table] = await Promise.all([runCli(['status', '--json'], daemon.clientEnv), runCli(['status'], daemon.clientEnv)]);
    assert.equal(json.code, 0, json.stderr);
    const status = JSON.parse(json.stdout) as StatusJson;
    assert.match(status.config.error ?? '', where);
    assert.equal(status.config.exists, true);
    assert.deepEqual(status.servers, [], 'no hosted server runs from a file that cannot be read');

    assert.equal(table.code, 0, table.stderr);
    const section = table.stdout.slice(table.stdout.search(/\nconfig {2,}\S/)).replace(/\s+/g, ' ');
    assert.match(
      section,
      /config \S*config\.json not applied: no hosted servers run from it until it is fixed; it is applied as soon as it is saved/,
    );
    assert.match(
      section,
      /is not valid JSON: line 4, column 4: a trailing comma: JSON allows no comma before '\}'/,
      'the error whole, not cut',
    );

    assert.match((await getHealth(daemon)).config?.error ?? '', where);
    const warned = readJsonLines(logPath(home)).find(
      (line) => line.msg === 'config file not applied: no hosted servers until it is fixed (it is applied as soon as it is saved)',
    );
    assert.ok(warned, 'a log line says so');
    assert.equal(warned.level, 40, 'at warn');
    assert.match(String(warned.err), where);

    // Fixed: the servers come, in the window already open.
    writeFileSync(config, JSON.stringify({ mcpServers: { memory: memoryEntry(home) } }, null, 2));
    await waitFor(() => listChanged > 0, 'tools/list_changed once the file is fixed', 15_000);
    const after = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(after.includes('memory__read_graph'), after.join(', '));
    const graph = await client.callTool({ name: 'memory__read_graph', arguments: {} });
    assert.notEqual(graph.isError, true, JSON.stringify(graph));
    const fixed = JSON.parse((await runCli(['status', '--json'], daemon.clientEnv)).stdout) as StatusJson;
    assert.equal(fixed.config.error, null);
    assert.equal(fixed.config.last_reload?.ok, true);
    assert.deepEqual(fixed.config.last_reload?.ok && fixed.config.last_reload.added, ['memory']);
    assert.equal(daemon.proc.exitCode, null, 'the same daemon: no restart');
  });

  test('a live edit that breaks the file keeps the running servers, and `exai-ws reload` names line and column', async () => {
    const daemon = await startHostingDaemon(cleanup, (home) => ({ memory: memoryEntry(home) }), LISTS_WAIT);
    const config = join(daemon.home, 'config.json');
    const { client } = await connectWs(cleanup, daemon);
    assert.ok((await client.listTools()).tools.some((t) => t.name === 'memory__read_graph'));

    writeFileSync(config, withTrailingComma(daemon.home));
    await waitFor(async () => (await getHealth(daemon)).config?.error, 'the error in /health', 15_000);
    const reload = await runCli(['reload'], daemon.clientEnv);
    assert.equal(reload.code, 1);
    assert.match(reload.stderr, /reload failed, the running servers stay as they are: .*line 4, column 4: a trailing comma/);
    assert.ok(
      (await client.listTools()).tools.some((t) => t.name === 'memory__read_graph'),
      'the running server stays',
    );
    const graph = await client.callTool({ name: 'memory__read_graph', arguments: {} });
    assert.notEqual(graph.isError, true, JSON.stringify(graph));
  });

  test('line and column of the mistakes people make in a JSON file', () => {
    const at = (text: string) => {
      const problem = findJsonSyntaxError(text);
      return problem && `${problem.line}:${problem.column} ${problem.reason}`;
    };
    assert.equal(at('{"a": 1}'), null);
    assert.equal(at(' [1, "two", {"x": null}, true, -1.5e3] '), null);
    assert.equal(at('{\n  "a": 1,\n}'), "2:9 a trailing comma: JSON allows no comma before '}'");
    assert.equal(at('{\n  "a": [1, 2,],\n}'), "2:13 a trailing comma: JSON allows no comma before ']'");
    assert.equal(at('{\n  "a": 1\n  "b": 2\n}'), `3:3 '"' where ',' or '}' was expected`);
    assert.equal(at("{'a': 1}"), '1:2 a single quote: property names take double quotes');
    assert.equal(at('{"a": 1'), "1:8 the file ends inside an object (a '}' is missing)");
    assert.equal(at('{"mcpServers": {"memory": '), '1:27 the file ends where a value was expected');
    assert.equal(at(''), '1:1 the file ends where a value was expected');
    assert.equal(at('{"a": "x\ny"}'), '1:9 a line break inside a string (write it as an escape such as \\n)');
    assert.equal(at('{"a": "C:\\path"}'), '1:10 an escape JSON does not know (\\p); a backslash itself is written \\\\');
    assert.equal(at('{"a": 01}'), "1:8 '1' where ',' or '}' was expected");
    assert.equal(at('{"a": 1} x'), "1:10 'x' after the end of the JSON value");
    assert.equal(at('{"a": tru}'), "1:7 't' where a value was expected");
    // Every mistake JSON.parse refuses, the scan finds too (and the reverse).
    for (const text of ['{"a":1,}', '[,]', '{"a"}', '{"a":}', '{,}', '[1 2]', '"\\u12"', 'nul', '{"a":1}}', '\t', '{"a":"\u0001"}']) {
      assert.throws(() => JSON.parse(text), text);
      assert.ok(findJsonSyntaxError(text), `the scan misses the mistake in ${JSON.stringify(text)}`);
    }
    assert.equal(findJsonSyntaxError('['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH)), null);
    assert.equal(findJsonSyntaxError('['.repeat(100_000))?.reason, `nested more than ${MAX_DEPTH} levels deep`);
  });
});
