-- A netboot that stays on (mirrors migrations/sqlite/0005_netboot_persistent.sql):
-- every power-on gets the profile's image (diskless and live machines,
-- `after_install = "netboot"`, `rackboot netboot S on --persistent`); an
-- install-done callback does not turn it off.
ALTER TABLE netboot ADD COLUMN persistent BOOLEAN NOT NULL DEFAULT false;
