// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The rooms of src/ and which way their arrows point (ARCHITECTURE.md, "Layers"): a file may
 * import only from the rooms below its own. Import strings are relative, so each rule names the
 * rooms a file in that room must not reach, at any depth of `../`.
 */
const rooms = (...names) => `^(\\.\\./)+(${names.join('|')})(/|\\.js$)`;
const forbid = (regex, why) => ({ regex, message: why });
const above = 'is above this room (ARCHITECTURE.md, "Layers")';
const layerRules = [
  {
    files: ['src/protocol/**/*.ts'],
    patterns: [forbid('^(?!\\./)', 'protocol/ is the wire alone: no Node built-ins, packages or other rooms')],
  },
  {
    files: ['src/transport/**/*.ts'],
    patterns: [forbid(rooms('local', 'hosting', 'builtin', 'mux', 'daemon', 'shim', 'commands', 'cli'), above)],
  },
  { files: ['src/local/**/*.ts'], patterns: [forbid(rooms('hosting', 'builtin', 'mux', 'daemon', 'shim', 'commands', 'cli'), above)] },
  { files: ['src/hosting/**/*.ts'], patterns: [forbid(rooms('builtin', 'mux', 'daemon', 'shim', 'commands', 'cli'), above)] },
  { files: ['src/builtin/**/*.ts'], patterns: [forbid(rooms('mux', 'daemon', 'shim', 'commands', 'cli'), above)] },
  { files: ['src/mux/**/*.ts'], patterns: [forbid(rooms('daemon', 'shim', 'commands', 'cli'), above)] },
  {
    files: ['src/daemon/authz/**/*.ts'],
    patterns: [
      forbid(rooms('files', 'sessions', 'web', 'shim', 'commands', 'cli'), above),
      forbid('^\\.\\./[^/]+\\.js$', `daemon/ ${above}`),
    ],
  },
  {
    files: ['src/daemon/files/**/*.ts'],
    patterns: [forbid(rooms('sessions', 'web', 'shim', 'commands', 'cli'), above), forbid('^\\.\\./[^/]+\\.js$', `daemon/ ${above}`)],
  },
  {
    files: ['src/daemon/sessions/**/*.ts'],
    patterns: [forbid(rooms('web', 'shim', 'commands', 'cli'), above), forbid('^\\.\\./[^/]+\\.js$', `daemon/ ${above}`)],
  },
  {
    files: ['src/daemon/web/**/*.ts'],
    patterns: [forbid(rooms('shim', 'commands', 'cli'), above), forbid('^\\.\\./[^/]+\\.js$', `daemon/ ${above}`)],
  },
  { files: ['src/daemon/*.ts'], patterns: [forbid(rooms('shim', 'commands', 'cli'), above)] },
  {
    files: ['src/shim/**/*.ts'],
    patterns: [
      forbid(rooms('hosting', 'builtin', 'mux', 'daemon', 'commands', 'cli'), 'the shim stands on protocol/, transport/ and local/ alone'),
    ],
  },
].map(({ files, patterns }) => ({ files, rules: { 'no-restricted-imports': ['error', { patterns }] } }));

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench-results/', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['scripts/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-base-to-string': 'off',
    },
  },
  ...layerRules,
  // Files stay small enough to read in one sitting (issue 23): a file past 400 lines is asking to be
  // split, a function past 80 lines is a hidden state machine. Blank lines and comments count.
  {
    files: ['src/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 400 }],
      'max-lines-per-function': ['error', { max: 80 }],
    },
  },
  // Declarative tables would be the only exception: none is needed today (the command runners in
  // cli.ts and the client blocks in commands/client-setup-blocks.ts are tables of small functions).
);
