-- A netboot that stays on: every power-on gets the profile's image (diskless
-- and live machines, `after_install = "netboot"`, `rackboot netboot S on
-- --persistent`); an install-done callback does not turn it off.
ALTER TABLE netboot ADD COLUMN persistent INTEGER NOT NULL DEFAULT 0;
