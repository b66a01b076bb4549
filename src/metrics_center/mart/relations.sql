-- Per-metric storage and relations, built from a structured description (metrics_center.mart.relations).
--
-- Tasks write the mart with a role that has no DDL rights; registering a metric's definition still has to
-- create its storage and its BI relations in the same transaction. This function is that one piece of DDL,
-- run with its owner's rights: it builds only from identifiers it checks itself and literals it quotes
-- (format %I / %L), never from SQL text, and it never drops stored values.
--
-- spec: {"key", "grain", "ratio", "stored_dimensions": [...], "dimensions": [...],
--        "comments": {"current": {column: text}, "history": {column: text}},
--        "relation_comments": {"current": text, "history": text}, "readers": [department…] | null}
CREATE OR REPLACE FUNCTION metrics_mart.ensure_metric_relations(spec jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = metrics_mart, pg_temp AS $fn$
DECLARE
    k text := spec ->> 'key';
    storage text;
    ident constant text := '^[a-z][a-z0-9_]{0,62}$';
    ratio boolean := coalesce((spec ->> 'ratio')::boolean, false);
    stored text[];
    dims text[];
    d text;
    label text;
    parts text := '';
    cols text;
    hist_cols text;
    source text;
    view_name text;
    which text;
    existing text[];
    reader record;
    c record;
BEGIN
    IF k IS NULL OR k !~ '^[a-z][a-z0-9_]{0,54}$' THEN
        RAISE EXCEPTION 'ensure_metric_relations: % is not a metric key', coalesce(k, 'NULL');
    END IF;
    storage := 'values__' || k;
    SELECT coalesce(array_agg(x ORDER BY n), '{}') INTO stored
        FROM jsonb_array_elements_text(spec -> 'stored_dimensions') WITH ORDINALITY AS t(x, n);
    SELECT coalesce(array_agg(x ORDER BY n), '{}') INTO dims
        FROM jsonb_array_elements_text(spec -> 'dimensions') WITH ORDINALITY AS t(x, n);
    FOREACH d IN ARRAY stored || dims LOOP
        IF d !~ ident THEN
            RAISE EXCEPTION 'ensure_metric_relations: % is not a dimension name', d;
        END IF;
    END LOOP;
    label := CASE spec ->> 'grain'
        WHEN 'day' THEN $$to_char(v.period_start, 'YYYY-MM-DD')$$
        WHEN 'week' THEN $$to_char(v.period_start, 'IYYY-"W"IW')$$
        WHEN 'month' THEN $$to_char(v.period_start, 'YYYY-MM')$$
    END;
    IF label IS NULL THEN
        RAISE EXCEPTION 'ensure_metric_relations: grain % is not day, week or month', spec ->> 'grain';
    END IF;
    -- One builder at a time: the views over every metric's storage are rebuilt below.
    PERFORM pg_advisory_xact_lock(hashtext('metrics_center.relations'));

    -- Storage: every dimension the metric ever had stays a column (old values keep theirs).
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS metrics_mart.%I (period_start date NOT NULL, period_end date NOT NULL, '
        'value double precision, numerator double precision, denominator double precision, '
        'definition_version integer NOT NULL, publication_id integer NOT NULL, superseded_at timestamptz)',
        storage);
    FOREACH d IN ARRAY stored LOOP
        EXECUTE format('ALTER TABLE metrics_mart.%I ADD COLUMN IF NOT EXISTS %I text', storage, d);
    END LOOP;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON metrics_mart.%I (period_start) WHERE superseded_at IS NULL',
                   'ix_current_' || md5(storage), storage);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON metrics_mart.%I (publication_id)',
                   'ix_publication_' || md5(storage), storage);
    -- One current value per period and combination (of every stored dimension: old rows keep theirs).
    EXECUTE format('DROP INDEX IF EXISTS metrics_mart.%I', 'uq_current_' || md5(storage));
    EXECUTE format(
        'CREATE UNIQUE INDEX %I ON metrics_mart.%I (period_start%s) NULLS NOT DISTINCT WHERE superseded_at IS NULL',
        'uq_current_' || md5(storage), storage,
        (SELECT coalesce(string_agg(format(', %I', x), '' ORDER BY n), '') FROM unnest(stored) WITH ORDINALITY AS t(x, n)));
    EXECUTE format('COMMENT ON TABLE metrics_mart.%I IS %L', storage,
                   'Storage of ' || k || ': every published value, typed; read it through metrics.' || k || '.');

    -- The relations BI reads: the current values, and every publication with is_current.
    cols := 'v.period_start, v.period_end, ' || label || ' AS period';
    FOREACH d IN ARRAY dims LOOP
        cols := cols || format(', v.%I', d);
    END LOOP;
    cols := cols || ', v.value' || CASE WHEN ratio THEN ', v.numerator, v.denominator' ELSE '' END
        || ', d.unit, v.definition_version, p.approved_by, p.published_at';
    hist_cols := cols || ', v.superseded_at IS NULL AS is_current, p.published_at AS valid_from, '
        || 'v.superseded_at AS valid_to, p.run_id, coalesce(p.restatement, false) AS restatement';
    source := format(
        ' FROM metrics_mart.%I v LEFT JOIN metrics_mart.publication p ON p.id = v.publication_id'
        ' LEFT JOIN metrics_mart.metric_definition d ON d.metric_key = %L AND d.version = v.definition_version',
        storage, k);
    FOREACH which IN ARRAY ARRAY['current', 'history'] LOOP
        view_name := CASE which WHEN 'current' THEN k ELSE k || '_history' END;
        SELECT array_agg(attname::text ORDER BY attnum) INTO existing FROM pg_attribute
            WHERE attrelid = to_regclass(format('metrics.%I', view_name)) AND attnum > 0 AND NOT attisdropped;
        IF existing IS NOT NULL THEN
            -- A different set of columns needs a new view (CREATE OR REPLACE keeps columns); a view someone
            -- built on top of it then stops the registration with Postgres's own message, nothing is lost.
            EXECUTE format('DROP VIEW metrics.%I', view_name);
        END IF;
        IF which = 'current' THEN
            EXECUTE format('CREATE VIEW metrics.%I AS SELECT %s%s WHERE v.superseded_at IS NULL', view_name, cols, source);
        ELSE
            EXECUTE format('CREATE VIEW metrics.%I AS SELECT %s%s', view_name, hist_cols, source);
        END IF;
        EXECUTE format('COMMENT ON VIEW metrics.%I IS %L', view_name, spec -> 'relation_comments' ->> which);
        FOR c IN SELECT key, value FROM jsonb_each_text(spec -> 'comments' -> which) LOOP
            IF c.key !~ ident THEN
                RAISE EXCEPTION 'ensure_metric_relations: % is not a column name', c.key;
            END IF;
            EXECUTE format('COMMENT ON COLUMN metrics.%I.%I IS %L', view_name, c.key, c.value);
        END LOOP;
        -- Readers registered by `metrics-center mart grant-reader` whose department may read this metric.
        FOR reader IN
            SELECT r.role_name FROM metrics_mart.mart_reader r
            WHERE r.department IS NULL  -- a reader of every metric
               OR jsonb_typeof(spec -> 'readers') IS DISTINCT FROM 'array'  -- a public metric
               OR r.department IN (SELECT jsonb_array_elements_text(spec -> 'readers'))
        LOOP
            EXECUTE format('GRANT SELECT ON metrics.%I TO %I', view_name, reader.role_name);
        END LOOP;
    END LOOP;
    PERFORM metrics_mart.rebuild_value_views();
END
$fn$;

-- metric_value_all: every metric's storage in one tall relation (dimensions as JSON, as each version had
-- them), under metric_value_current / metric_value_history. Its columns never change: CREATE OR REPLACE.
CREATE OR REPLACE FUNCTION metrics_mart.rebuild_value_views() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = metrics_mart, pg_temp AS $fn$
DECLARE
    m record;
    branches text[] := '{}';
    dims_json text;
BEGIN
    FOR m IN
        SELECT d.metric_key,
               string_agg(format('WHEN %s THEN jsonb_build_object(%s)', d.version,
                    (SELECT coalesce(string_agg(format('%L, v.%I', x, x), ', ' ORDER BY x), '')
                     FROM jsonb_array_elements_text(d.dimensions) AS t(x))), ' ' ORDER BY d.version) AS cases
        FROM metrics_mart.metric_definition d
        WHERE to_regclass(format('metrics_mart.%I', 'values__' || d.metric_key)) IS NOT NULL
        GROUP BY d.metric_key ORDER BY d.metric_key
    LOOP
        dims_json := 'CASE v.definition_version ' || m.cases || ' END';
        branches := branches || format(
            'SELECT %L::varchar(63) AS metric_key, v.period_start, v.period_end, %s AS dimensions, v.value, '
            'v.numerator, v.denominator, v.definition_version, v.publication_id, v.superseded_at '
            'FROM metrics_mart.%I v', m.metric_key, dims_json, 'values__' || m.metric_key);
    END LOOP;
    IF cardinality(branches) = 0 THEN
        branches := ARRAY['SELECT NULL::varchar(63) AS metric_key, NULL::date AS period_start, NULL::date AS period_end, '
            'NULL::jsonb AS dimensions, NULL::double precision AS value, NULL::double precision AS numerator, '
            'NULL::double precision AS denominator, NULL::integer AS definition_version, NULL::integer AS publication_id, '
            'NULL::timestamptz AS superseded_at WHERE false'];
    END IF;
    EXECUTE 'CREATE OR REPLACE VIEW metrics_mart.metric_value_all AS ' || array_to_string(branches, ' UNION ALL ');
END
$fn$;
