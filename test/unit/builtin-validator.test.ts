/**
 * The built-in server makes the SDK's JSON Schema validator on first use (builtin.ts): what a
 * client answers to an elicitation is still checked against the schema asked for.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client, InMemoryTransport } from '@modelcontextprotocol/client';
import { createBuiltinServer } from '../../src/builtin/builtin.js';

test('an elicitation answer that breaks the requested schema is refused; one that keeps it is taken', async () => {
  const server = createBuiltinServer({ startedAtMs: Date.now() });
  const client = new Client({ name: 'unit', version: '1' }, { capabilities: { elicitation: {} } });
  const answers: Record<string, unknown>[] = [{ count: 'three' }, { count: 3 }];
  client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: answers.shift() as Record<string, string> }));
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  const ask = () =>
    server.server.elicitInput({
      message: 'How many?',
      requestedSchema: { type: 'object', properties: { count: { type: 'number' } }, required: ['count'] },
    });
  await assert.rejects(ask(), /count|schema|number/i, 'a string where the schema asks for a number');
  assert.deepEqual((await ask()).content, { count: 3 });
  await client.close();
  await server.close();
});
