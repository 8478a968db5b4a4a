/**
 * What real clients send first (test/fixtures/client-openings, copied from shared/), replayed through a real shim
 * and daemon, must be answered exactly as the direct `exai-ws stdio` server answers it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CLI, Cleanup, OPENINGS, pool, spawnLines, spawnShim, startDaemon, type RawShim } from './helpers.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

const files = readdirSync(OPENINGS).filter((f) => f.endsWith('.ndjson'));

function requestsOf(lines: string[]): (string | number)[] {
  return lines.map((l) => JSON.parse(l) as { id?: string | number }).flatMap((m) => (m.id === undefined ? [] : [m.id]));
}

/** Sends every line, then reads one reply per request; returns replies keyed by id. */
async function replay(proc: Pick<RawShim, 'send' | 'nextLine'>, lines: string[]): Promise<Map<string | number, unknown>> {
  for (const line of lines) proc.send(line);
  const replies = new Map<string | number, unknown>();
  for (let i = 0; i < requestsOf(lines).length; i++) {
    // A bound, not a wait: generous, since the openings replay side by side on a loaded machine.
    const reply = JSON.parse(await proc.nextLine(20_000)) as { id: string | number };
    assert.ok(!replies.has(reply.id), `two replies for id ${reply.id}`);
    replies.set(reply.id, reply);
  }
  return replies;
}

test('every recorded client opening is answered through the daemon as the direct server answers it', async () => {
  assert.ok(files.length >= 5, `expected the shared client openings, found ${files.length}`);
  const daemon = await startDaemon(cleanup, { plain: true });
  // Each opening has its own shim and its own direct server: two at a time, side by side.
  await pool(files.length, 2, async (n) => {
    const file = files[n] as string;
    const lines = readFileSync(join(OPENINGS, file), 'utf8')
      .split('\n')
      .filter((l) => l.trim().length > 0);
    const [viaDaemon, direct] = await Promise.all([
      replay(spawnShim(cleanup, daemon.clientEnv), lines),
      replay(spawnLines(cleanup, [CLI, 'stdio']), lines),
    ]);
    assert.deepEqual(viaDaemon, direct, `${file}: the daemon answered differently from a direct server`);

    const opening = JSON.parse(lines[0] ?? '{}') as { id: number; params: { protocolVersion: string } };
    const init = viaDaemon.get(opening.id) as { result: { protocolVersion: string; capabilities: Record<string, unknown> } };
    assert.equal(init.result.protocolVersion, opening.params.protocolVersion, `${file}: protocol version not honoured`);
    assert.ok(init.result.capabilities.tools, `${file}: no tools capability`);
    for (const [id, reply] of viaDaemon) {
      const request = lines.map((l) => JSON.parse(l) as { id?: unknown; method: string }).find((m) => m.id === id);
      const r = reply as { result?: { tools?: { name: string }[] }; error?: { code: number } };
      if (request?.method === 'tools/list')
        assert.ok(
          r.result?.tools?.some((t) => t.name === 'version'),
          `${file}: no version tool`,
        );
      if (request?.method === 'logging/setLevel') assert.deepEqual(r.result, {}, `${file}: setLevel refused`);
    }
  });
});
