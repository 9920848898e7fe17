//! Versioned schema migrations, applied at start.
//!
//! Each migration is a numbered list of statements written once for both dialects; `{id}` stands
//! for the dialect's auto-numbered primary key and `{without_rowid}` for SQLite's clustered tables. Applied versions are recorded in
//! `shipyard_schema`. Each migration runs in one transaction (DDL is transactional in SQLite and
//! PostgreSQL), so a crash leaves the schema at a whole version. On PostgreSQL an advisory lock
//! keeps replicas that start together from migrating twice.
//!
//! Never edit a released migration: add a new one.

use shipyard_core::{Result, entities::now_millis};

use crate::db::{Database, Dialect};

/// One schema version.
struct Migration {
    version: i64,
    description: &'static str,
    statements: &'static [&'static str],
}

/// All migrations, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tracking, logged models and model registry",
        statements: &[
            "CREATE TABLE experiments (
            experiment_id {id},
            name TEXT NOT NULL UNIQUE,
            artifact_location TEXT NOT NULL,
            lifecycle_stage TEXT NOT NULL,
            creation_time BIGINT NOT NULL,
            last_update_time BIGINT NOT NULL
        )",
            "CREATE TABLE experiment_tags (
            experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (experiment_id, key)
        )",
            // Runs have a 32-hex public id and a compact integer key that every per-run table uses:
            // integer keys keep the history tables small and their lookups cheap.
            "CREATE TABLE runs (
            run_key {id},
            run_uuid TEXT NOT NULL UNIQUE,
            experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id),
            name TEXT NOT NULL,
            user_id TEXT NOT NULL,
            status TEXT NOT NULL,
            start_time BIGINT,
            end_time BIGINT,
            deleted_time BIGINT,
            artifact_uri TEXT NOT NULL,
            lifecycle_stage TEXT NOT NULL
        )",
            "CREATE INDEX runs_by_experiment ON runs (experiment_id, lifecycle_stage, start_time)",
            "CREATE TABLE params (
            run_key BIGINT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (run_key, key)
        ){without_rowid}",
            "CREATE INDEX params_by_key_value ON params (key, value)",
            "CREATE TABLE tags (
            run_key BIGINT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (run_key, key)
        ){without_rowid}",
            "CREATE INDEX tags_by_key_value ON tags (key, value)",
            // Every logged value. `value` holds 0 for NaN (`is_nan` = 1), as MLflow stores it. The
            // primary key both serves history reads (prefix run, key) and drops exact repeats, as
            // MLflow's primary key on these columns does; without a rowid, an insert is one b-tree.
            // No foreign key: the writer has just checked the run, and a per-row lookup of `runs`
            // would cost a b-tree search per value on the hottest write path. Runs are only ever
            // soft-deleted.
            "CREATE TABLE metrics (
            run_key BIGINT NOT NULL,
            key TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            is_nan INTEGER NOT NULL,
            timestamp BIGINT NOT NULL,
            step BIGINT NOT NULL,
            PRIMARY KEY (run_key, key, step, timestamp, value, is_nan)
        ){without_rowid}",
            // The latest value of each metric of each run (greatest step, then timestamp, then value),
            // maintained on every write so that searches never scan the history.
            "CREATE TABLE latest_metrics (
            run_key BIGINT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            is_nan INTEGER NOT NULL,
            timestamp BIGINT NOT NULL,
            step BIGINT NOT NULL,
            PRIMARY KEY (run_key, key)
        ){without_rowid}",
            "CREATE INDEX latest_metrics_by_key_value ON latest_metrics (key, value)",
            "CREATE TABLE datasets (
            dataset_uuid TEXT PRIMARY KEY,
            experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id),
            name TEXT NOT NULL,
            digest TEXT NOT NULL,
            source_type TEXT NOT NULL,
            source TEXT NOT NULL,
            schema_json TEXT,
            profile_json TEXT,
            UNIQUE (experiment_id, name, digest)
        )",
            "CREATE TABLE run_dataset_inputs (
            run_key BIGINT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
            dataset_uuid TEXT NOT NULL REFERENCES datasets(dataset_uuid),
            PRIMARY KEY (run_key, dataset_uuid)
        )",
            "CREATE TABLE run_dataset_input_tags (
            run_key BIGINT NOT NULL,
            dataset_uuid TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (run_key, dataset_uuid, key),
            FOREIGN KEY (run_key, dataset_uuid)
                REFERENCES run_dataset_inputs(run_key, dataset_uuid) ON DELETE CASCADE
        )",
            "CREATE TABLE logged_models (
            model_id TEXT PRIMARY KEY,
            experiment_id BIGINT NOT NULL REFERENCES experiments(experiment_id),
            name TEXT NOT NULL,
            artifact_location TEXT NOT NULL,
            creation_timestamp_ms BIGINT NOT NULL,
            last_updated_timestamp_ms BIGINT NOT NULL,
            status TEXT NOT NULL,
            lifecycle_stage TEXT NOT NULL,
            model_type TEXT NOT NULL,
            source_run_id TEXT,
            status_message TEXT
        )",
            "CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, name)",
            "CREATE TABLE logged_model_params (
            model_id TEXT NOT NULL REFERENCES logged_models(model_id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (model_id, key)
        )",
            "CREATE TABLE logged_model_tags (
            model_id TEXT NOT NULL REFERENCES logged_models(model_id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (model_id, key)
        )",
            // Metrics logged with a `model_id` (MLflow 3), kept apart from the run's history.
            "CREATE TABLE logged_model_metrics (
            model_id TEXT NOT NULL REFERENCES logged_models(model_id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            is_nan INTEGER NOT NULL,
            timestamp BIGINT NOT NULL,
            step BIGINT NOT NULL,
            run_id TEXT,
            dataset_name TEXT,
            dataset_digest TEXT
        )",
            "CREATE UNIQUE INDEX logged_model_metrics_identity
            ON logged_model_metrics (model_id, key, step, timestamp, value, is_nan)",
            "CREATE TABLE run_model_inputs (
            run_key BIGINT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
            model_id TEXT NOT NULL,
            PRIMARY KEY (run_key, model_id)
        )",
            "CREATE TABLE run_model_outputs (
            run_key BIGINT NOT NULL REFERENCES runs(run_key) ON DELETE CASCADE,
            model_id TEXT NOT NULL,
            step BIGINT NOT NULL,
            PRIMARY KEY (run_key, model_id)
        )",
            "CREATE TABLE registered_models (
            id {id},
            name TEXT NOT NULL UNIQUE,
            creation_time BIGINT NOT NULL,
            last_updated_time BIGINT NOT NULL,
            description TEXT,
            user_id TEXT,
            last_version BIGINT NOT NULL
        )",
            "CREATE TABLE registered_model_tags (
            registered_model_id BIGINT NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (registered_model_id, key)
        )",
            "CREATE TABLE model_versions (
            registered_model_id BIGINT NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,
            version BIGINT NOT NULL,
            creation_time BIGINT NOT NULL,
            last_updated_time BIGINT NOT NULL,
            description TEXT NOT NULL,
            user_id TEXT,
            current_stage TEXT NOT NULL,
            source TEXT NOT NULL,
            storage_location TEXT,
            run_id TEXT,
            run_link TEXT NOT NULL,
            status TEXT NOT NULL,
            status_message TEXT,
            model_id TEXT,
            PRIMARY KEY (registered_model_id, version)
        )",
            "CREATE INDEX model_versions_by_run ON model_versions (run_id)",
            "CREATE INDEX model_versions_by_model_id ON model_versions (model_id)",
            "CREATE TABLE model_version_tags (
            registered_model_id BIGINT NOT NULL,
            version BIGINT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (registered_model_id, version, key),
            FOREIGN KEY (registered_model_id, version)
                REFERENCES model_versions(registered_model_id, version) ON DELETE CASCADE
        )",
            "CREATE TABLE registered_model_aliases (
            registered_model_id BIGINT NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,
            alias TEXT NOT NULL,
            version BIGINT NOT NULL,
            PRIMARY KEY (registered_model_id, alias)
        )",
        ],
    },
    Migration {
        version: 2,
        description: "dataset versions",
        statements: &[
            "CREATE TABLE dataset_versions (
            name TEXT NOT NULL,
            version BIGINT NOT NULL,
            digest TEXT NOT NULL,
            format TEXT NOT NULL,
            rows BIGINT NOT NULL,
            size_bytes BIGINT NOT NULL,
            schema_json TEXT NOT NULL,
            profile_json TEXT NOT NULL,
            source TEXT NOT NULL,
            artifact_root TEXT NOT NULL,
            artifact_path TEXT NOT NULL,
            created_time BIGINT NOT NULL,
            description TEXT,
            PRIMARY KEY (name, version)
        )",
            "CREATE INDEX dataset_versions_by_digest ON dataset_versions (digest)",
        ],
    },
    Migration {
        version: 3,
        description: "alias move history",
        statements: &[
            // One row per change of an alias; `seq` numbers the moves of one alias, and its unique
            // key is what makes two concurrent moves of one alias conflict. Versions are plain
            // numbers, not foreign keys: the history outlives a deleted version.
            "CREATE TABLE alias_moves (
            registered_model_id BIGINT NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,
            alias TEXT NOT NULL,
            seq BIGINT NOT NULL,
            move_time BIGINT NOT NULL,
            kind TEXT NOT NULL,
            from_version BIGINT,
            to_version BIGINT,
            actor TEXT NOT NULL,
            reason TEXT,
            gate_report TEXT,
            PRIMARY KEY (registered_model_id, alias, seq)
        )",
        ],
    },
    Migration {
        version: 4,
        description: "deployments",
        statements: &["CREATE TABLE deployments (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            revision BIGINT NOT NULL,
            created_time BIGINT NOT NULL,
            updated_time BIGINT NOT NULL
        )"],
    },
    Migration {
        version: 5,
        description: "prediction log, ground truth, monitors and alerts",
        statements: &[
            // One row per served row (a failed request: one row without inputs). `id` orders the
            // log, so "the last N predictions" is an index range scan.
            "CREATE TABLE predictions (
            id {id},
            deployment TEXT NOT NULL,
            request_id TEXT NOT NULL,
            row_index BIGINT NOT NULL,
            time BIGINT NOT NULL,
            model TEXT NOT NULL,
            version TEXT,
            status BIGINT NOT NULL,
            latency_us BIGINT NOT NULL,
            inputs TEXT,
            prediction TEXT,
            score DOUBLE PRECISION
        )",
            "CREATE INDEX predictions_by_deployment ON predictions (deployment, id)",
            "CREATE INDEX predictions_by_request ON predictions (request_id, row_index)",
            // Ground truth arrives later than its prediction and may be corrected: one row per
            // predicted row, replaced on a second report.
            "CREATE TABLE feedback (
            request_id TEXT NOT NULL,
            row_index BIGINT NOT NULL,
            actual TEXT NOT NULL,
            time BIGINT NOT NULL,
            PRIMARY KEY (request_id, row_index)
        ){without_rowid}",
            "CREATE TABLE monitors (
            deployment TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            updated_time BIGINT NOT NULL
        )",
            "CREATE TABLE monitor_evaluations (
            id {id},
            deployment TEXT NOT NULL,
            time BIGINT NOT NULL,
            vals TEXT NOT NULL
        )",
            "CREATE INDEX monitor_evaluations_by_deployment ON monitor_evaluations (deployment, time)",
            "CREATE TABLE alerts (
            id {id},
            deployment TEXT NOT NULL,
            rule TEXT NOT NULL,
            metric TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            comparator TEXT NOT NULL,
            threshold DOUBLE PRECISION NOT NULL,
            severity TEXT NOT NULL,
            fired_time BIGINT NOT NULL,
            message TEXT NOT NULL,
            action TEXT,
            action_status TEXT,
            action_detail TEXT
        )",
            "CREATE INDEX alerts_by_deployment ON alerts (deployment, fired_time)",
        ],
    },
    Migration {
        version: 6,
        description: "serving processes and what each has applied (rollout status)",
        statements: &["CREATE TABLE serving_processes (
            id TEXT PRIMARY KEY,
            heartbeat BIGINT NOT NULL,
            report TEXT NOT NULL
        )"],
    },
    Migration {
        version: 7,
        description: "acknowledged alerts; secrets shared by a server's replicas",
        statements: &[
            "ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT",
            "ALTER TABLE alerts ADD COLUMN acknowledged_time BIGINT",
            // Keys every replica must agree on (the web UI's form tokens), made once.
            "CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            created_time BIGINT NOT NULL
        )",
        ],
    },
    Migration {
        version: 8,
        description: "validation results of dataset versions",
        statements: &[
            "CREATE TABLE dataset_validations (
            id {id},
            name TEXT NOT NULL,
            version BIGINT NOT NULL,
            suite TEXT NOT NULL,
            success BIGINT NOT NULL,
            evaluated BIGINT NOT NULL,
            successful BIGINT NOT NULL,
            quality_score DOUBLE PRECISION NOT NULL,
            report TEXT NOT NULL,
            actor TEXT NOT NULL,
            time BIGINT NOT NULL
        )",
            "CREATE INDEX dataset_validations_by_version ON dataset_validations (name, version, id)",
        ],
    },
    Migration {
        version: 9,
        description: "users, API tokens, roles and their permissions (MLflow 3.17's model)",
        statements: &[
            "CREATE TABLE users (
            id {id},
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            is_admin BIGINT NOT NULL,
            created_time BIGINT NOT NULL,
            password_time BIGINT NOT NULL
        )",
            // A token's public id is its lookup key; only its SHA-256 is kept.
            "CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            digest TEXT NOT NULL,
            scopes TEXT NOT NULL,
            created_time BIGINT NOT NULL,
            expires_time BIGINT,
            revoked_time BIGINT,
            last_used_time BIGINT
        )",
            "CREATE INDEX api_tokens_by_user ON api_tokens (user_id)",
            // A user's own grants live in a role named __user_<id>__, as MLflow keeps them.
            "CREATE TABLE roles (
            id {id},
            workspace TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            UNIQUE (workspace, name)
        )",
            "CREATE TABLE role_permissions (
            id {id},
            role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            resource_type TEXT NOT NULL,
            resource_pattern TEXT NOT NULL,
            permission TEXT NOT NULL,
            UNIQUE (role_id, resource_type, resource_pattern)
        )",
            "CREATE INDEX role_permissions_by_resource ON role_permissions (resource_type, resource_pattern)",
            "CREATE TABLE user_roles (
            id {id},
            user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            UNIQUE (user_id, role_id)
        )",
        ],
    },
    Migration {
        version: 10,
        description: "who last changed each deployment",
        statements: &["ALTER TABLE deployments ADD COLUMN updated_by TEXT"],
    },
    Migration {
        version: 11,
        description: "client certificates that sign their user in (TLS client authentication)",
        statements: &["CREATE TABLE client_certificates (
            sha256 TEXT PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_time BIGINT NOT NULL
        )"],
    },
];

/// Creates the bookkeeping table, then applies every migration not yet recorded.
pub(crate) async fn apply(db: &Database) -> Result<()> {
    db.write(|c| {
        Box::pin(async move {
            let create = c.stmt(
                "CREATE TABLE IF NOT EXISTS shipyard_schema (
                    version BIGINT PRIMARY KEY,
                    description TEXT NOT NULL,
                    applied_at BIGINT NOT NULL
                )",
                [],
            );
            c.execute(create).await?;
            Ok(())
        })
    })
    .await?;
    for migration in MIGRATIONS {
        let applied = db
            .write(move |c| {
                Box::pin(async move {
                    if c.dialect() == Dialect::Postgres {
                        // Replicas starting together wait here; the loser then sees the version recorded.
                        c.fetch_all(c.stmt("SELECT pg_advisory_xact_lock(7215006815)", [])).await?;
                    }
                    let done = c.stmt("SELECT version FROM shipyard_schema WHERE version = $1", [migration.version.into()]);
                    if c.fetch_optional(done).await?.is_some() {
                        return Ok(false);
                    }
                    for statement in migration.statements {
                        let text = statement
                            .replace("{id}", c.dialect().identity_column())
                            .replace("{without_rowid}", c.dialect().without_rowid());
                        c.execute(c.stmt(&text, [])).await?;
                    }
                    if migration.version == 1 {
                        // MLflow's `Default` experiment, id 0, which runs without an experiment id go to.
                        let seed = c.stmt(
                            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
                             VALUES (0, 'Default', $1, 'active', $2, $2)",
                            [crate::tracking::experiment_artifact_location(0).into(), now_millis().into()],
                        );
                        c.execute(seed).await?;
                    }
                    let record = c.stmt(
                        "INSERT INTO shipyard_schema (version, description, applied_at) VALUES ($1, $2, $3)",
                        [migration.version.into(), migration.description.into(), now_millis().into()],
                    );
                    c.execute(record).await?;
                    Ok(true)
                })
            })
            .await?;
        if applied {
            tracing::info!(version = migration.version, "applied schema migration: {}", migration.description);
        }
    }
    Ok(())
}
