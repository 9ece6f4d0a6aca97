import { Migration } from '@mikro-orm/migrations';

// Every statement that appends revocation events notifies the channel
// tessera_revocations when its transaction commits (NOTIFY is transactional):
// replicas LISTENing poll the log at once instead of at their next interval.
// The log stays the source of truth; the notification carries nothing.
export class Migration20261202184500 extends Migration {

  override name = 'Migration20261202184500';

  override up(): void | Promise<void> {
    this.addSql(`create or replace function "tessera_notify_revocations"() returns trigger language plpgsql as $$ begin perform pg_notify('tessera_revocations', ''); return null; end $$;`);
    this.addSql(`create trigger "revocation_events_notify" after insert on "revocation_events" for each statement execute function "tessera_notify_revocations"();`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop trigger if exists "revocation_events_notify" on "revocation_events";`);
    this.addSql(`drop function if exists "tessera_notify_revocations"();`);
  }

}
