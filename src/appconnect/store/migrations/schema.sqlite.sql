-- The newest schema for sqlite, rendered from store/tables.py. Do not edit: run
-- `python -m appconnect.store.migrate render-schema` after changing tables.py (and add a migration).
CREATE TABLE account_data (
	account_id VARCHAR(255) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	data_key VARCHAR(255) NOT NULL,
	data JSON NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (account_id, platform, data_key)
);

CREATE TABLE admin_configs (
	id VARCHAR(255) NOT NULL,
	user_settings JSON NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE admin_ringcentral (
	id VARCHAR(255) NOT NULL,
	access_token TEXT,
	refresh_token TEXT,
	token_expiry DATETIME,
	server_logging TEXT,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE call_logs (
	pk INTEGER NOT NULL,
	session_id VARCHAR(255) NOT NULL,
	extension_number VARCHAR(64) DEFAULT '' NOT NULL,
	hashed_extension_id VARCHAR(255) DEFAULT '' NOT NULL,
	call_id VARCHAR(255) DEFAULT '' NOT NULL,
	platform VARCHAR(64) NOT NULL,
	user_id VARCHAR(255) NOT NULL,
	contact_id VARCHAR(255),
	third_party_log_id VARCHAR(255),
	status VARCHAR(16) DEFAULT 'done' NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	scope VARCHAR(512) DEFAULT '' NOT NULL,
	payload TEXT,
	attempts INTEGER DEFAULT '0' NOT NULL,
	next_attempt_at DATETIME,
	PRIMARY KEY (pk),
	CONSTRAINT uq_call_logs_scope_identity UNIQUE (scope, session_id, extension_number, hashed_extension_id)
);

CREATE INDEX ix_call_logs_status_next_attempt ON call_logs (status, next_attempt_at);

CREATE TABLE call_note_cache (
	scope VARCHAR(512) NOT NULL,
	session_id VARCHAR(255) NOT NULL,
	note TEXT NOT NULL,
	expires_at DATETIME NOT NULL,
	PRIMARY KEY (scope, session_id)
);

CREATE INDEX ix_call_note_cache_expires_at ON call_note_cache (expires_at);

CREATE TABLE created_contacts (
	account_id VARCHAR(255) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	phone_number VARCHAR(32) NOT NULL,
	contact JSON NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (account_id, platform, phone_number)
);

CREATE TABLE locks (
	name VARCHAR(255) NOT NULL,
	owner VARCHAR(64) NOT NULL,
	expires_at DATETIME NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE managed_auth (
	account_hash VARCHAR(64) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	data_key VARCHAR(128) NOT NULL,
	data TEXT NOT NULL,
	expires_at DATETIME,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (account_hash, platform, data_key)
);

CREATE TABLE message_logs (
	scope VARCHAR(512) NOT NULL,
	id VARCHAR(255) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	conversation_id VARCHAR(255),
	conversation_log_id VARCHAR(255),
	third_party_log_id VARCHAR(255),
	user_id VARCHAR(255) NOT NULL,
	status VARCHAR(16) DEFAULT 'done' NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (scope, id)
);

CREATE INDEX ix_message_logs_scope_conversation_log_id ON message_logs (scope, conversation_log_id);

CREATE TABLE message_outbox (
	pk INTEGER NOT NULL,
	scope VARCHAR(512) NOT NULL,
	user_id VARCHAR(255) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	payload TEXT NOT NULL,
	status VARCHAR(16) DEFAULT 'queued' NOT NULL,
	attempts INTEGER DEFAULT '0' NOT NULL,
	next_attempt_at DATETIME,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (pk)
);

CREATE INDEX ix_message_outbox_status_next_attempt ON message_outbox (status, next_attempt_at);

CREATE TABLE rate_limit_grants (
	limit_key VARCHAR(255) NOT NULL,
	grant_id VARCHAR(32) NOT NULL,
	granted_at FLOAT NOT NULL,
	calls INTEGER NOT NULL,
	PRIMARY KEY (limit_key, grant_id)
);

CREATE INDEX ix_rate_limit_grants_key_time ON rate_limit_grants (limit_key, granted_at);

CREATE TABLE rate_limits (
	limit_key VARCHAR(255) NOT NULL,
	tat FLOAT NOT NULL,
	grant_id VARCHAR(32) DEFAULT '' NOT NULL,
	PRIMARY KEY (limit_key)
);

CREATE TABLE user_mappings (
	rc_account VARCHAR(255) NOT NULL,
	crm_scope VARCHAR(512) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	mappings JSON NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	PRIMARY KEY (rc_account)
);

CREATE INDEX ix_user_mappings_crm_scope ON user_mappings (crm_scope, platform);

CREATE TABLE users (
	id VARCHAR(255) NOT NULL,
	platform VARCHAR(64) NOT NULL,
	hostname VARCHAR(512) DEFAULT '' NOT NULL,
	rc_account_id VARCHAR(255),
	hashed_rc_extension_id VARCHAR(255),
	timezone_name VARCHAR(128),
	timezone_offset VARCHAR(32),
	access_token TEXT,
	refresh_token TEXT,
	token_expiry DATETIME,
	session_revoked_at DATETIME,
	tokens_valid_after DATETIME,
	platform_additional_info JSON NOT NULL,
	user_settings JSON NOT NULL,
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
	account_scope VARCHAR(512),
	PRIMARY KEY (id)
);

