-- Optional: a PostgreSQL role with only the grants prereg-sync's worker (including its
-- consumed-status job and the dlq/maintenance commands) needs. NOT a migration: run it once as
-- the schema owner, after `prereg-sync migrate`, with psql variables:
--
--   psql -v worker_role=prereg_sync_worker -v worker_password='…' -f sql/roles/least_privilege.sql mosip_prereg
--
-- Then run the worker with DATABASE_URL for that role and
--   PREREG_SYNC__DATABASE__MIGRATE_ON_START=false  PREREG_SYNC__DATABASE__CREATE_IF_MISSING=false
-- (migrations keep running as the owner, with `prereg-sync migrate`). See docs/security.md.

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'worker_role', :'worker_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'worker_role') \gexec

GRANT CONNECT ON DATABASE :"DBNAME" TO :"worker_role";
GRANT USAGE ON SCHEMA prereg TO :"worker_role";

-- Hot path: transaction lookup and record, both PRID tables, audit, crash-loop suspects,
-- standing rejections.
GRANT SELECT, INSERT ON prereg.sync_transaction TO :"worker_role";
GRANT SELECT, INSERT ON prereg.intf_processed_prereg_list TO :"worker_role";
GRANT SELECT, INSERT, UPDATE ON prereg.processed_prereg_list TO :"worker_role";
GRANT INSERT ON prereg.sync_audit TO :"worker_role";
GRANT USAGE ON SEQUENCE prereg.sync_audit_id_seq TO :"worker_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON prereg.sync_suspect TO :"worker_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON prereg.sync_rejection TO :"worker_role";
-- Known-application check (read only) and the consumed-status job (archive = copy + delete).
GRANT SELECT, DELETE ON prereg.applicant_demographic, prereg.applicant_document,
    prereg.reg_appointment, prereg.applications TO :"worker_role";
-- SELECT … FOR UPDATE (the job locks an application while moving it) needs UPDATE on one column.
GRANT UPDATE (upd_dtimes) ON prereg.applicant_demographic TO :"worker_role";
GRANT SELECT, INSERT ON prereg.applicant_demographic_consumed, prereg.applicant_document_consumed,
    prereg.reg_appointment_consumed TO :"worker_role";
GRANT SELECT, INSERT, UPDATE ON prereg.consumed_job_run TO :"worker_role";
GRANT USAGE ON SEQUENCE prereg.consumed_job_run_id_seq TO :"worker_role";
-- Retention commands (`prereg-sync maintenance purge-*`), if operators run them as this role.
GRANT DELETE ON prereg.intf_processed_prereg_list, prereg.sync_transaction, prereg.sync_audit
    TO :"worker_role";
GRANT SELECT ON prereg.sync_audit TO :"worker_role";
