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
    // Library code: no `any` in what users call (tests may poke at internals).
    files: ['tests/**/*.ts', 'bench/**/*.ts', 'scripts/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
