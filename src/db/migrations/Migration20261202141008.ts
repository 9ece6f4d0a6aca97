import { Migration } from '@mikro-orm/migrations';

export class Migration20261202141008 extends Migration {

  override name = 'Migration20261202141008';

  override up(): void | Promise<void> {
    this.addSql(`create table "replay_records" ("key" varchar(64) not null, "expires_at" timestamptz not null, primary key ("key"));`);
    this.addSql(`create index "replay_records_expires_at_index" on "replay_records" ("expires_at");`);

    this.addSql(`create table "registry_authority_keys" ("kid" varchar(64) not null, "public_jwk" jsonb not null, "private_key_encrypted" text not null, "created_at" timestamptz not null, "retired_at" timestamptz null, primary key ("kid"));`);

    this.addSql(`create table "regions" ("id" varchar(63) not null, "tenant_id" uuid not null, "alias" varchar(200) not null default '', "active" boolean not null default true, "user_id" uuid null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`);
    this.addSql(`create index "regions_tenant_id_id_index" on "regions" ("tenant_id", "id");`);

    this.addSql(`create table "capabilities" ("id" uuid not null, "region_id" varchar(63) not null, "name" varchar(63) not null, "group_id" uuid null, "public_jwk" jsonb not null, "kid" varchar(64) not null, "algorithm" varchar(8) not null, "active" boolean not null default true, "expires_at" timestamptz not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`);
    this.addSql(`alter table "capabilities" add constraint "capabilities_region_id_name_unique" unique ("region_id", "name");`);

    this.addSql(`alter table "regions" add constraint "regions_tenant_id_foreign" foreign key ("tenant_id") references "tenants" ("id") on delete cascade;`);
    this.addSql(`alter table "regions" add constraint "regions_user_id_foreign" foreign key ("user_id") references "users" ("id") on delete cascade;`);

    this.addSql(`alter table "capabilities" add constraint "capabilities_region_id_foreign" foreign key ("region_id") references "regions" ("id") on delete cascade;`);
    this.addSql(`alter table "capabilities" add constraint "capabilities_group_id_foreign" foreign key ("group_id") references "groups" ("id") on delete set null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "capabilities" drop constraint "capabilities_region_id_foreign";`);

    this.addSql(`drop table if exists "replay_records" cascade;`);
    this.addSql(`drop table if exists "registry_authority_keys" cascade;`);
    this.addSql(`drop table if exists "regions" cascade;`);
    this.addSql(`drop table if exists "capabilities" cascade;`);
  }

}
