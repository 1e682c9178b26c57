// Imports point one way: util <- engine, hub <- models <- data <- eval / train <- report <- serve <- llm
// <- cli and kernel (the apps). `npm run lint` checks it; CI runs it.
const layers = ['util', 'engine|hub', 'models', 'data', 'eval|train', 'report', 'serve', 'llm'];
const path = (name) => (name === 'llm' ? '^lib/llm(\\.ts$|/)' : `^lib/(${name})/`);

const upward = layers.map((layer, i) => ({
  name: `${layer.replace('|', '-')}-imports-upward`,
  comment: `lib/${layer} may import only the layers below it (${layers.slice(0, i).join(', ') || 'none'}) and lib/errors.ts`,
  severity: 'error',
  from: { path: path(layer) },
  to: { path: [...layers.slice(i + 1), 'cli'].map(path).concat(['^lib/index\\.ts$']) },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'eval-train-siblings',
      comment: 'evaluation and training are siblings: what both need lives in data, models or util',
      severity: 'error',
      from: { path: '^lib/(eval|train)/' },
      to: { path: '^lib/(eval|train)/', pathNot: '^lib/$1/' },
    },
    {
      name: 'library-knows-no-kernel',
      comment: 'lib/ draws through the DisplayHost the kernel plugs in; only the CLI launches the kernel',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/cli/' },
      to: { path: '^kernel/' },
    },
    {
      name: 'kernel-not-cli',
      severity: 'error',
      from: { path: '^kernel/' },
      to: { path: '^lib/cli/' },
    },
    {
      name: 'no-circular',
      comment: 'type-only cycles are erased at compile time',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    { name: 'not-to-tests', severity: 'error', from: { path: '^(lib|kernel)/' }, to: { path: '^tests/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
