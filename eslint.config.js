// Lint for what the compiler does not catch; formatting is Prettier's (npm run format:check).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'artifacts/', 'build/', 'native/build/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      // Unused names are the compiler's job (noUnusedLocals); `_x` marks one kept on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-console': 'off',
    },
  },
  {
    // A call to an async function whose promise nobody awaits runs after the code that needs its result
    // (model calls read back asynchronously): the type checker cannot see it; this rule can.
    files: ['lib/**/*.ts', 'kernel/**/*.ts', 'tests/**/*.ts', 'bench/**/*.ts'],
    languageOptions: { parserOptions: { project: ['./tsconfig.tests.json'], tsconfigRootDir: import.meta.dirname } },
    rules: { '@typescript-eslint/no-floating-promises': 'error' },
  },
  {
    // Library code: no `any` in what users call (tests may poke at internals).
    files: ['tests/**/*.ts', 'bench/**/*.ts', 'scripts/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
