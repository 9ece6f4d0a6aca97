import { Migration } from '@mikro-orm/migrations';

// Retention (src/retention.ts) finds ended sessions, expired refresh tokens and old revocation
// events by these indexes; deleting a session cascades to its refresh tokens by session_id.
// (The generator also proposed dropping Migration20261202184500's NOTIFY trigger, which no
// entity declares: removed by hand.)
export class Migration20261202204257 extends Migration {

  override name = 'Migration20261202204257';

  override up(): void | Promise<void> {
    this.addSql(`create index "revocation_events_created_at_index" on "revocation_events" ("created_at");`);

    this.addSql(`create index "sessions_expires_at_index" on "sessions" ("expires_at");`);
    this.addSql(`create index "sessions_revoked_at_index" on "sessions" ("revoked_at");`);

    this.addSql(`create index "refresh_tokens_session_id_index" on "refresh_tokens" ("session_id");`);
    this.addSql(`create index "refresh_tokens_expires_at_index" on "refresh_tokens" ("expires_at");`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop index "refresh_tokens_session_id_index";`);
    this.addSql(`drop index "refresh_tokens_expires_at_index";`);

    this.addSql(`drop index "revocation_events_created_at_index";`);

    this.addSql(`drop index "sessions_expires_at_index";`);
    this.addSql(`drop index "sessions_revoked_at_index";`);
  }

}
