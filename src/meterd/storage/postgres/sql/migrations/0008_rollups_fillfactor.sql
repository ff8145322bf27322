-- --- room in rollup pages for updates -----------------------------------------------
-- Ingest updates the same rollup rows again and again (each 15-minute bucket's, while
-- it is current). With a fill factor of 80 a page keeps room for the new row versions,
-- so those updates stay heap-only (HOT) and write no index entries. Pages written
-- from now on keep the room; existing ones get it when rewritten.
ALTER TABLE rollups SET (fillfactor = 80);
ALTER TABLE group_rollups SET (fillfactor = 80);
