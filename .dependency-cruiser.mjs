// Import rules that `npm run lint` checks (dependency-cruiser): imports point down the layers, no file
// imports itself through others, and nothing under src/ imports test or bench code. The layer order
// and why each room sits where it does: docs/architecture.md#layers.

const HELP = 'read docs/architecture.md#layers (the order is `layers` in .dependency-cruiser.mjs)';

/** Each room (a folder, or a file at the top of src/) as a path pattern. */
export const rooms = {
  config: '^src/config[.]ts$',
  observability: '^src/observability/',
  sdk: '^packages/sdk/',
  client: '^clients/typescript/',
  db: '^src/db/',
  periodic: '^src/periodic[.]ts$',
  tokens: '^src/tokens/',
  tenants: '^src/tenants/',
  alerts: '^src/alerts/',
  webhooks: '^src/webhooks/',
  storage: '^src/storage/',
  jobs: '^src/jobs/',
  realtime: '^src/realtime/',
  worker: '^src/worker/',
  schedules: '^src/schedules/',
  'job-types': '^src/job-types/',
  api: '^src/api/',
  console: '^src/console/',
  service: '^src/service[.]ts$',
  cli: '^src/cli([.]ts$|/)',
  main: '^src/main[.]ts$',
};

/** Bottom first. A room imports only rooms of lower layers; rooms of one layer do not import each other. */
export const layers = [
  ['config'],
  ['observability', 'sdk', 'client'],
  ['db'],
  ['periodic', 'tokens', 'tenants', 'alerts'],
  ['webhooks', 'storage'],
  ['jobs'],
  ['realtime', 'worker', 'job-types', 'schedules'],
  ['api'],
  ['console'],
  ['service'],
  ['cli'],
  ['main'],
];

const paths = (names) => names.map((name) => rooms[name]);

const layerRules = layers.flatMap((layer, i) => {
  const above = layers.slice(i + 1).flat();
  return layer.flatMap((room) => {
    const banned = [...above, ...layer.filter((other) => other !== room)];
    if (banned.length === 0) return [];
    return [
      {
        name: `layers: ${room} imports up or sideways`,
        comment: `${room} may import only rooms of lower layers (${layers.slice(0, i).flat().join(', ') || 'none'}): move the shared type or function down, or ${HELP}`,
        severity: 'error',
        from: { path: rooms[room] },
        to: { path: paths(banned) },
      },
    ];
  });
});

export default {
  forbidden: [
    ...layerRules,
    {
      name: 'layers: a room missing from the layer order',
      comment: `every folder (or top-level file) of src/ is a room with a place in the layer order: add it to \`rooms\` and \`layers\` in .dependency-cruiser.mjs and to the table in docs/architecture.md; ${HELP}`,
      severity: 'error',
      from: { path: '^src/', pathNot: Object.values(rooms) },
      to: {},
    },
    {
      name: 'no-cycle',
      comment: `two files import each other (directly or through others): move what both need into a third, lower file; ${HELP}`,
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-imports-no-test-code',
      comment: `the service does not import test or bench code; helpers both use live in test/support; ${HELP}`,
      severity: 'error',
      from: { path: '^(src|packages|clients)/' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist|[.]longhaul|examples|reports|[.]stryker-tmp)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports count: a type is a dependency on its room as much as a value is.
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.json'] },
  },
};
