#!/bin/sh
# Sets the passwords of the login roles deploy/bootstrap.sql creates, from the environment:
#   ORDERS_DB_PASSWORD PAYMENTS_DB_PASSWORD CLOSING_DB_PASSWORD ANALYTICS_DB_PASSWORD
#   BACKUP_DB_PASSWORD
# docker-compose.yml mounts it into /docker-entrypoint-initdb.d after the bootstrap, where
# the postgres image runs it on the database's first start with psql connected as the
# administrator; by hand, run it with PGHOST, PGUSER, PGDATABASE... set. Running it again
# sets the same passwords. The values go through psql variables, never a command line, so
# `ps` does not show them and quoting cannot break the statement.
set -eu

for name in ORDERS PAYMENTS CLOSING ANALYTICS BACKUP; do
    eval "value=\${${name}_DB_PASSWORD:-}"
    if [ "${#value}" -lt 16 ]; then
        echo "role-passwords.sh: ${name}_DB_PASSWORD must be set, 16 characters or more" \
             "(make env writes random ones into .env)" >&2
        exit 1
    fi
done

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
    ${POSTGRES_USER:+--username="$POSTGRES_USER"} ${POSTGRES_DB:+--dbname="$POSTGRES_DB"} \
    -v orders="$ORDERS_DB_PASSWORD" -v payments="$PAYMENTS_DB_PASSWORD" \
    -v closing="$CLOSING_DB_PASSWORD" -v analytics="$ANALYTICS_DB_PASSWORD" \
    -v backup="$BACKUP_DB_PASSWORD" <<'SQL'
ALTER ROLE salesbook_orders PASSWORD :'orders';
ALTER ROLE salesbook_payments PASSWORD :'payments';
ALTER ROLE salesbook_closing PASSWORD :'closing';
ALTER ROLE salesbook_analytics PASSWORD :'analytics';
ALTER ROLE salesbook_backup PASSWORD :'backup';
SQL
