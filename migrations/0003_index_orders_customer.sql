-- CREATE INDEX CONCURRENTLY cannot run inside a transaction, so this migration opts out.
-- Keep non-transactional statements idempotent: a retry after a failure must be harmless.
-- depends: 0002_create_orders
-- transactional: false
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);
