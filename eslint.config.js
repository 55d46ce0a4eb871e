import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tandem/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error',
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Use env.clock (platform/real only).' },
        { selector: "CallExpression[callee.object.name='Math'][callee.property.name='random']", message: 'Use env.random.' },
      ],
    },
  },
  {
    files: ['src/platform/real/**', 'src/**/*.test.ts', 'src/bench/**', 'src/cli/**', 'src/cluster/**'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
