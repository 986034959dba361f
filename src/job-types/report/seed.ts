/**
 * `longhaul demo seed --rows N`: the demo dataset `demo_orders`, N orders over two years, made by one
 * INSERT … SELECT over generate_series. Every value is a pure function of the row id (Postgres's stable
 * hashint8extended, no random()), so the same N always gives the same table.
 */
import type { Queryable } from '../../db/pool.ts';

/** Regions, products with their category and list price: small fixed vocabularies picked by hash. */
const REGIONS = ['North America', 'Europe', 'Asia Pacific', 'Latin America', 'Middle East', 'Africa'];
const PRODUCTS: Array<[string, string, number]> = [
  ['Laptop', 'Computers', 1249.0],
  ['Desktop', 'Computers', 899.0],
  ['Tablet', 'Computers', 499.0],
  ['Monitor', 'Peripherals', 229.0],
  ['Keyboard', 'Peripherals', 59.0],
  ['Mouse', 'Peripherals', 29.0],
  ['Headphones', 'Audio', 149.0],
  ['Speaker', 'Audio', 89.0],
  ['Phone', 'Mobile', 799.0],
  ['Charger', 'Mobile', 25.0],
  ['Router', 'Networking', 119.0],
  ['Switch', 'Networking', 189.0],
];
/** Distinct customers the orders are spread over. */
const CUSTOMERS = 20_000;
/** The orders span two years from this instant, in id order, growing over time (the density rises linearly: sqrt of id). */
const EPOCH = '2024-01-01T00:00:00Z';
const SPAN_SECONDS = 2 * 365 * 24 * 3600;

/** A non-negative pseudo-random bigint of the row id `g`, one stream per `k` (the sign bit masked off, so no abs() overflow). */
const h = (k: number): string => `(hashint8extended(g, ${k}) & 9223372036854775807)`;
const lit = (s: string): string => `'${s.replaceAll("'", "''")}'`;
const textArray = (xs: string[]): string => `ARRAY[${xs.map(lit).join(', ')}]`;

/** (Re)creates demo_orders with `rows` rows, its primary key and statistics. Returns the time taken in ms. */
export async function seedDemoOrders(db: Queryable, rows: number): Promise<number> {
  if (!Number.isSafeInteger(rows) || rows < 0) throw new Error('rows must be a non-negative integer');
  const started = performance.now();
  await db.query('DROP TABLE IF EXISTS demo_orders');
  await db.query(`CREATE TABLE demo_orders (
    id          bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    customer    text NOT NULL,
    region      text NOT NULL,
    product     text NOT NULL,
    category    text NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(10,2) NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL)`);
  // Constants of the vocabularies, written into the statement (no input reaches this SQL).
  const products = textArray(PRODUCTS.map((p) => p[0]));
  const categories = textArray(PRODUCTS.map((p) => p[1]));
  const prices = `ARRAY[${PRODUCTS.map((p) => p[2].toFixed(2)).join(', ')}]::numeric[]`;
  await db.query(
    `INSERT INTO demo_orders
     SELECT id, created_at, customer, region, product, category, quantity, unit_price, quantity * unit_price, status
       FROM (
         SELECT g AS id,
                timestamptz ${lit(EPOCH)} + make_interval(secs => floor(${SPAN_SECONDS} * sqrt((g - 1)::float8 / greatest($1::bigint, 1)))) AS created_at,
                'C' || lpad((1 + ${h(1)} % ${CUSTOMERS})::text, 5, '0') AS customer,
                (${textArray(REGIONS)})[1 + ${h(2)} % ${REGIONS.length}] AS region,
                (${products})[p] AS product,
                (${categories})[p] AS category,
                1 + (${h(4)} % 100) / 20 + (${h(5)} % 100) / 60 AS quantity,
                round((${prices})[p] * (85 + ${h(6)} % 31) / 100, 2) AS unit_price,
                CASE WHEN ${h(7)} % 100 < 78 THEN 'completed'
                     WHEN ${h(7)} % 100 < 90 THEN 'shipped'
                     WHEN ${h(7)} % 100 < 95 THEN 'cancelled'
                     WHEN ${h(7)} % 100 < 98 THEN 'refunded'
                     ELSE 'pending' END AS status
           FROM generate_series(1::bigint, $1::bigint) AS g,
                LATERAL (SELECT (1 + ${h(3)} % ${PRODUCTS.length})::int AS p) AS pick
       ) AS o`,
    [rows],
  );
  await db.query('ALTER TABLE demo_orders ADD PRIMARY KEY (id)');
  // Vacuumed as well as analyzed: a freshly inserted table's first readers would set every row's hint
  // bits, and autovacuum would visit all of it in the next minute, both while the first reports run.
  await db.query('VACUUM (ANALYZE) demo_orders');
  return performance.now() - started;
}
