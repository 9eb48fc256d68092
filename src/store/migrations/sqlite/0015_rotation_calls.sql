-- A rotation's two larger transactions as one call each, sqlite flavour: nothing to add.
-- ../postgres/0015_rotation_calls.sql makes them server functions; SQLite runs in this process,
-- where a statement costs no round trip, so the store sends its statements one by one.
SELECT 1;
