// Lint: the layers (the core and the ports know no framework or SDK and no adapter, the HTTP
// side knows no adapter), no import cycles, and typescript-eslint's recommended rules.
import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

const SDKS = ['express', 'sequelize', '@dapr/dapr'];

/** `no-restricted-imports` options forbidding these packages (and their subpaths). */
function forbidPackages(packages, layer) {
  return {
    paths: packages.map((name) => ({ name, message: `${layer} must not depend on ${name}: reach it through a port (src/ports).` })),
    patterns: packages.map((name) => ({ group: [`${name}/*`], message: `${layer} must not depend on ${name}: reach it through a port (src/ports).` })),
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    plugins: { 'import-x': importX },
    settings: {
      // no-cycle follows only files with these extensions, parsed with this parser.
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.d.ts', '.js', '.json'] })],
    },
    rules: {
      'import-x/no-cycle': 'error',
      // `_`-prefixed names are deliberately unused (a parameter kept for its position).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Public generics default to `any` on purpose (a handler's data is whatever was published;
      // `bind<F extends (...args: any[]) => any>`); strict type-checking covers the rest.
      '@typescript-eslint/no-explicit-any': 'off',
      // `interface NewOutboxRow extends OutboxMessage {}` names a port's type for its callers.
      '@typescript-eslint/no-empty-object-type': ['error', { allowInterfaces: 'with-single-extends' }],
      // DaprPublisher loads the SDK only when it builds its own client; the telemetry loads the
      // OpenTelemetry API (an optional peer) once, when it is installed.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['^@dapr/dapr$', '^@opentelemetry/api$'] }],
    },
  },
  {
    // Tests load some modules lazily, and Express 4 through its `express4` alias.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['src/core/**/*.ts', 'src/ports/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', forbidPackages(SDKS, 'The core and the ports')],
      'import-x/no-restricted-paths': ['error', {
        zones: [
          { target: ['./src/core', './src/ports'], from: './src/adapters', message: 'The core and the ports must not import an adapter.' },
          { target: ['./src/core', './src/ports'], from: './src/http', message: 'The core and the ports must not import the HTTP layer.' },
        ],
      }],
    },
  },
  {
    files: ['src/http/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', forbidPackages(['sequelize', '@dapr/dapr'], 'The HTTP layer')],
      'import-x/no-restricted-paths': ['error', {
        zones: [{ target: './src/http', from: './src/adapters', message: 'The HTTP layer must not import an adapter: use the ports.' }],
      }],
    },
  },
);
