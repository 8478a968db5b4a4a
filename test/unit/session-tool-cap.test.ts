/**
 * A window over its client's cap (issue 25), on a real Session over a real Hub (servers linked
 * in memory): the log warns once per session however often the window lists its tools, the
 * report says over_cap with the count, the list's size and the cap, and the cap is the one in
 * force now (a config reload may raise it).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import type { DaemonConfig } from '../../src/daemon/files/config.js';
import { Metrics } from '../../src/daemon/files/metrics.js';
import { Session } from '../../src/daemon/sessions/session.js';
import { OVER_CAP_HINT } from '../../src/daemon/sessions/client-window.js';
import { InMemoryTransport } from '../../src/transport/in-memory.js';
import { CloseCode } from '../../src/protocol/codes.js';
import { hubRig, settle, type HubRig } from '../fixtures/hub-rig.js';

type Json = Record<string, unknown>;

const CONFIG = { holdMaxBytes: 1024 * 1024, callTimeoutMs: 10_000, maxInflight: 8, queueLimit: 8 } as DaemonConfig;

/** A session whose client is `client`, its log lines kept, initialized; `list()` lists its tools. */
async function open(rig: HubRig, id: string, client: string, toolCap?: (name: string | undefined) => number | null) {
  const logged: Json[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Json) });
  const session = new Session(
    id,
    { name: 'unit', version: '1' },
    { hub: rig.hub, config: CONFIG, metrics: new Metrics(), logger, expire: () => undefined, ...(toolCap ? { toolCap } : {}) },
  );
  const [daemon, peer] = InMemoryTransport.pair();
  const read: Json[] = [];
  peer.onmessage = (text) => read.push(JSON.parse(text) as Json);
  daemon.onmessage = (text) => session.receive(text);
  session.attach(daemon);
  const request = async (rid: string, method: string, params?: Json): Promise<Json> => {
    peer.send(JSON.stringify({ jsonrpc: '2.0', id: rid, method, ...(params ? { params } : {}) }), undefined);
    for (let i = 0; i < 1000; i++) {
      const found = read.find((m) => m.id === rid);
      if (found) return found;
      await settle();
    }
    assert.fail(`no answer to ${rid}`);
  };
  await request('init', 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: client, version: '1' } });
  let n = 0;
  const list = async () => ((await request(`list-${++n}`, 'tools/list')).result as { tools: unknown[] }).tools.length;
  const warnings = () => logged.filter((l) => l.level === 40);
  return { session, list, warnings, logged };
}

describe('a window and its client tool cap', async () => {
  const rig = await hubRig([{ name: 'alpha' }]);
  after(() => rig.close());

  test('over the cap: one warning for the session, not one per list, with what to do', async () => {
    const w = await open(rig, 'over', 'tiny-client', (name) => (name === 'tiny-client' ? 2 : null));
    const count = await w.list();
    assert.ok(count > 2, `the rig lists more than 2 tools (${count})`);
    await w.list();
    await w.list();
    const warnings = w.warnings();
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    const line = warnings[0] as Json;
    assert.equal(line.msg, "window's tools list is longer than its client takes");
    assert.equal(line.session_id, 'over');
    assert.equal(line.client, 'tiny-client');
    assert.equal(line.tools, count);
    assert.equal(line.tool_cap, 2);
    assert.equal(line.profile, null);
    assert.ok(typeof line.tools_bytes === 'number' && line.tools_bytes > 0);
    assert.equal(line.hint, OVER_CAP_HINT);
    const report = w.session.windowTools;
    assert.deepEqual(report, {
      profile: null,
      profile_missing: false,
      tools: count,
      tools_bytes: line.tools_bytes,
      tool_cap: 2,
      over_cap: true,
    });
    w.session.close(CloseCode.NORMAL, 'test');
  });

  test('under the cap, or no known cap: no warning, over_cap false', async () => {
    const roomy = await open(rig, 'roomy', 'roomy-client', () => 1000);
    await roomy.list();
    assert.deepEqual(roomy.warnings(), []);
    assert.equal(roomy.session.windowTools.over_cap, false);
    assert.equal(roomy.session.windowTools.tool_cap, 1000);
    const uncapped = await open(rig, 'uncapped', 'any-client');
    await uncapped.list();
    assert.deepEqual(uncapped.warnings(), []);
    assert.deepEqual(
      [uncapped.session.windowTools.tool_cap, uncapped.session.windowTools.over_cap],
      [null, false],
      'a daemon given no caps (stdio tests, older wiring) knows none',
    );
    roomy.session.close(CloseCode.NORMAL, 'test');
    uncapped.session.close(CloseCode.NORMAL, 'test');
  });

  test('before the first list: no count; the cap is read as it is now (a reload that raises it clears over_cap)', async () => {
    let cap = 2;
    const w = await open(rig, 'reloaded', 'tiny-client', () => cap);
    assert.deepEqual(w.session.windowTools, {
      profile: null,
      profile_missing: false,
      tools: null,
      tools_bytes: null,
      tool_cap: 2,
      over_cap: false,
    });
    await w.list();
    assert.equal(w.session.windowTools.over_cap, true);
    cap = 100;
    assert.deepEqual([w.session.windowTools.tool_cap, w.session.windowTools.over_cap], [100, false]);
    cap = 2;
    await w.list();
    assert.equal(w.warnings().length, 1, 'still one warning for the session');
    w.session.close(CloseCode.NORMAL, 'test');
  });

  test('the initialize is logged as before (session initialized, the client, its version, the protocol)', async () => {
    const w = await open(rig, 'init-line', 'some-client');
    const line = w.logged.find((l) => l.msg === 'session initialized');
    assert.deepEqual(line && [line.session_id, line.mcp_client, line.mcp_client_version, line.protocol], [
      'init-line',
      'some-client',
      '1',
      '2025-06-18',
    ]);
    w.session.close(CloseCode.NORMAL, 'test');
  });
});
