/**
 * The Node options the daemon is meant to run with: `npm run daemon` passes them (package.json
 * spells them out: change both together), and so does the benchmark.
 *
 * `--max-semi-space-size=4`: V8 sizes its young generation for throughput and grows it to 16 MB
 * semi-spaces when many long-lived objects arrive at once, as when hundreds of sessions open;
 * it keeps that memory until the daemon has idled a while. Capped at 4 MB, the daemon holds a
 * third of the memory per idle session, and the built-in tool's throughput is unchanged within
 * the benchmark's noise (see README, Performance).
 */
export const DAEMON_NODE_OPTIONS: readonly string[] = Object.freeze(['--max-semi-space-size=4']);
