import { Migration } from '@mikro-orm/migrations';

export class Migration20261202075201 extends Migration {

  override name = 'Migration20261202075201';

  override up(): void | Promise<void> {
    this.addSql(`create table "external_identities" ("tenant_id" uuid not null, "issuer" varchar(255) not null, "subject" varchar(255) not null, "user_id" uuid not null, "name" varchar(255) not null, "created_at" timestamptz not null, "last_login_at" timestamptz not null, primary key ("tenant_id", "issuer", "subject"));`);
    this.addSql(`alter table "external_identities" add constraint "external_identities_user_id_unique" unique ("user_id");`);

    this.addSql(`alter table "tenants" add "oidc_issuers" jsonb not null default '[]';`);

    this.addSql(`alter table "sessions" add "upn_subject" varchar(255) null;`);

    this.addSql(`alter table "external_identities" add constraint "external_identities_tenant_id_foreign" foreign key ("tenant_id") references "tenants" ("id") on delete cascade;`);
    this.addSql(`alter table "external_identities" add constraint "external_identities_user_id_foreign" foreign key ("user_id") references "users" ("id") on delete cascade;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "external_identities" cascade;`);

    this.addSql(`alter table "sessions" drop column "upn_subject";`);

    this.addSql(`alter table "tenants" drop column "oidc_issuers";`);
  }

}
