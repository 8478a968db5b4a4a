/** Placeholder until the status page slice lands (issue 13). */
export function runOpenCommand(_options: { print: boolean }): Promise<number> {
  process.stderr.write('exai-ws open: not built yet\n');
  return Promise.resolve(1);
}
