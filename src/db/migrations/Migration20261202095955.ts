import { Migration } from '@mikro-orm/migrations';

export class Migration20261202095955 extends Migration {

  override name = 'Migration20261202095955';

  override up(): void | Promise<void> {
    this.addSql(`alter table "refresh_tokens" add "shared" boolean not null default false;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "refresh_tokens" drop column "shared";`);
  }

}
