import { Migration } from '@mikro-orm/migrations';

export class Migration20261202012159 extends Migration {

  override name = 'Migration20261202012159';

  override up(): void | Promise<void> {
    this.addSql(`alter table "microservices" add "owner" varchar(200) null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "microservices" drop column "owner";`);
  }

}
