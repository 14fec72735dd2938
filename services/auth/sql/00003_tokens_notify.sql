-- +goose Up
-- Every change to a token that can end or alter its validity notifies
-- channel auth_tokens_changed in the changing transaction, so that API
-- instances holding verified tokens in memory forget them when it commits
-- (services/auth Store.Listen). Recording a use (last_used_at) notifies
-- nothing.

-- +goose StatementBegin
CREATE FUNCTION auth.tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_tokens_changed', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER tokens_changed
    AFTER UPDATE OF id, name, role, iscm, hash, expires_at, revoked_at OR DELETE ON auth.tokens
    FOR EACH ROW EXECUTE FUNCTION auth.tokens_changed();

CREATE TRIGGER tokens_truncated
    AFTER TRUNCATE ON auth.tokens
    FOR EACH STATEMENT EXECUTE FUNCTION auth.tokens_changed();

-- +goose Down
DROP TRIGGER tokens_truncated ON auth.tokens;
DROP TRIGGER tokens_changed ON auth.tokens;
DROP FUNCTION auth.tokens_changed();
