import { Migration } from '@mikro-orm/migrations';

export class Migration20261125080838 extends Migration {

  override name = 'Migration20261125080838';

  override up(): void | Promise<void> {
    this.addSql(`create table "throttle_counters" ("key" varchar(255) not null, "points" int not null default 0, "expire" bigint null, primary key ("key"));`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "throttle_counters" cascade;`);
  }

}
