-- MOSIP pre-registration tables prereg-sync reads and writes. Created only when absent, so an
-- existing MOSIP database is used exactly as it is (columns as in mosip/pre-registration db_scripts).
CREATE SCHEMA IF NOT EXISTS prereg;

CREATE TABLE IF NOT EXISTS prereg.processed_prereg_list (
    prereg_id             varchar(36)   NOT NULL,
    first_received_dtimes timestamp     NOT NULL,
    status_code           varchar(36)   NOT NULL,
    status_comments       varchar(1024),
    prereg_trn_id         varchar(36),
    lang_code             varchar(3)    NOT NULL,
    cr_by                 varchar(256)  NOT NULL,
    cr_dtimes             timestamp     NOT NULL,
    upd_by                varchar(256),
    upd_dtimes            timestamp,
    is_deleted            boolean,
    del_dtimes            timestamp,
    CONSTRAINT pk_prcpl_id PRIMARY KEY (prereg_id)
);

CREATE TABLE IF NOT EXISTS prereg.intf_processed_prereg_list (
    prereg_id       varchar(36)  NOT NULL,
    received_dtimes timestamp    NOT NULL,
    lang_code       varchar(3)   NOT NULL,
    cr_by           varchar(256) NOT NULL,
    cr_dtimes       timestamp    NOT NULL,
    upd_by          varchar(256),
    upd_dtimes      timestamp,
    is_deleted      boolean,
    del_dtimes      timestamp,
    CONSTRAINT pk_iprcpl_id PRIMARY KEY (prereg_id, received_dtimes)
);

CREATE TABLE IF NOT EXISTS prereg.applicant_demographic (
    prereg_id         varchar(36)  NOT NULL,
    demog_detail      bytea        NOT NULL,
    demog_detail_hash varchar(64)  NOT NULL,
    encrypted_dtimes  timestamp    NOT NULL,
    status_code       varchar(36)  NOT NULL,
    lang_code         varchar(3)   NOT NULL,
    cr_appuser_id     varchar(256) NOT NULL,
    cr_by             varchar(256) NOT NULL,
    cr_dtimes         timestamp    NOT NULL,
    upd_by            varchar(256),
    upd_dtimes        timestamp,
    CONSTRAINT pk_appldem_prereg_id PRIMARY KEY (prereg_id)
);

CREATE TABLE IF NOT EXISTS prereg.applicant_demographic_consumed (
    LIKE prereg.applicant_demographic INCLUDING DEFAULTS,
    CONSTRAINT pk_appldemc_prereg_id PRIMARY KEY (prereg_id)
);

CREATE TABLE IF NOT EXISTS prereg.applicant_document (
    id              varchar(36)  NOT NULL,
    prereg_id       varchar(36)  NOT NULL,
    doc_name        varchar(128) NOT NULL,
    doc_cat_code    varchar(36)  NOT NULL,
    doc_typ_code    varchar(36)  NOT NULL,
    doc_file_format varchar(36)  NOT NULL,
    doc_id          varchar(128) NOT NULL,
    doc_hash        varchar(64)  NOT NULL,
    doc_ref_id      varchar(128),
    encrypted_dtimes timestamp   NOT NULL,
    status_code     varchar(36)  NOT NULL,
    lang_code       varchar(3)   NOT NULL,
    cr_by           varchar(256),
    cr_dtimes       timestamp,
    upd_by          varchar(256),
    upd_dtimes      timestamp,
    CONSTRAINT pk_appldoc_id PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_appldoc_prereg_id ON prereg.applicant_document (prereg_id);

CREATE TABLE IF NOT EXISTS prereg.applicant_document_consumed (
    LIKE prereg.applicant_document INCLUDING DEFAULTS,
    CONSTRAINT pk_appldocc_id PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS prereg.reg_appointment (
    id               varchar(36)  NOT NULL,
    regcntr_id       varchar(10)  NOT NULL,
    prereg_id        varchar(36)  NOT NULL,
    booking_dtimes   timestamp    NOT NULL,
    appointment_date date,
    slot_from_time   time,
    slot_to_time     time,
    lang_code        varchar(3)   NOT NULL,
    cr_by            varchar(256) NOT NULL,
    cr_dtimes        timestamp    NOT NULL,
    upd_by           varchar(256),
    upd_dtimes       timestamp,
    CONSTRAINT pk_rappmnt_id PRIMARY KEY (id),
    CONSTRAINT uk_rappmnt_id UNIQUE (prereg_id)
);

CREATE TABLE IF NOT EXISTS prereg.reg_appointment_consumed (
    LIKE prereg.reg_appointment INCLUDING DEFAULTS,
    CONSTRAINT pk_rappmntc_id PRIMARY KEY (id),
    CONSTRAINT uk_rappmntc_id UNIQUE (prereg_id)
);

CREATE TABLE IF NOT EXISTS prereg.applications (
    application_id          varchar(36)  NOT NULL,
    booking_type            varchar(256) NOT NULL,
    booking_status_code     varchar(256),
    application_status_code varchar(256),
    regcntr_id              varchar(10),
    appointment_date        date,
    booking_date            date,
    slot_from_time          time,
    slot_to_time            time,
    contact_info            varchar(256),
    cr_by                   varchar(256) NOT NULL,
    cr_dtimes               timestamp    NOT NULL,
    upd_by                  varchar(256),
    upd_dtimes              timestamp,
    CONSTRAINT pk_applications_id PRIMARY KEY (application_id)
);
