import { Migration } from '@mikro-orm/migrations';

export class Migration20261125000627 extends Migration {

  override name = 'Migration20261125000627';

  override up(): void | Promise<void> {
    this.addSql(`create table "microservices" ("name" varchar(100) not null, "version" varchar(64) not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("name"));`);

    this.addSql(`create table "permissions" ("codename" varchar(200) not null, "microservice_name" varchar(100) not null, "description" varchar(500) not null default '', primary key ("codename"));`);

    this.addSql(`create table "revocation_events" ("id" bigserial primary key, "kind" varchar(32) not null, "tenant_id" varchar(36) null, "user_id" varchar(36) null, "session_id" varchar(36) null, "key_id" varchar(64) null, "created_at" timestamptz not null);`);

    this.addSql(`create table "signing_keys" ("kid" varchar(64) not null, "algorithm" varchar(16) not null, "public_jwk" jsonb not null, "private_key_encrypted" text not null, "created_at" timestamptz not null, "activates_at" timestamptz not null, "retired_at" timestamptz null, "expires_at" timestamptz null, primary key ("kid"));`);

    this.addSql(`create table "tenants" ("id" uuid not null, "name" varchar(63) not null, "display_name" varchar(200) not null default '', "disabled" boolean not null default false, "self_registration_enabled" boolean not null default false, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`);
    this.addSql(`alter table "tenants" add constraint "tenants_name_unique" unique ("name");`);

    this.addSql(`create table "groups" ("id" uuid not null, "tenant_id" uuid not null, "name" varchar(100) not null, "description" varchar(500) not null default '', "permissions" jsonb not null, "is_default" boolean not null default false, "auto_grant_patterns" jsonb not null, "protected" boolean not null default false, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`);
    this.addSql(`alter table "groups" add constraint "groups_tenant_id_name_unique" unique ("tenant_id", "name");`);

    this.addSql(`create table "tenant_domains" ("domain" varchar(253) not null, "tenant_id" uuid not null, primary key ("domain"));`);

    this.addSql(`create table "users" ("id" uuid not null, "tenant_id" uuid not null, "username" varchar(64) not null, "username_key" varchar(64) not null, "email" varchar(254) null, "email_key" varchar(254) null, "display_name" varchar(200) not null default '', "password_hash" varchar(255) null, "disabled" boolean not null default false, "protected" boolean not null default false, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`);
    this.addSql(`alter table "users" add constraint "users_tenant_id_username_key_unique" unique ("tenant_id", "username_key");`);
    this.addSql(`alter table "users" add constraint "users_tenant_id_email_key_unique" unique ("tenant_id", "email_key");`);

    this.addSql(`create table "sessions" ("id" uuid not null, "tenant_id" uuid not null, "user_id" uuid null, "kind" varchar(16) not null, "subject" varchar(255) not null, "elected" jsonb not null, "audience" varchar(255) not null, "client_address" varchar(128) not null default '', "created_at" timestamptz not null, "refreshed_at" timestamptz not null, "expires_at" timestamptz not null, "absolute_expires_at" timestamptz not null, "revoked_at" timestamptz null, "revoke_reason" varchar(32) null, primary key ("id"));`);
    this.addSql(`create index "sessions_user_id_created_at_index" on "sessions" ("user_id", "created_at");`);

    this.addSql(`create table "refresh_tokens" ("hash" varchar(64) not null, "session_id" uuid not null, "created_at" timestamptz not null, "expires_at" timestamptz not null, "used_at" timestamptz null, primary key ("hash"));`);

    this.addSql(`create table "group_members" ("group_id" uuid not null, "user_id" uuid not null, "created_at" timestamptz not null, primary key ("group_id", "user_id"));`);
    this.addSql(`create index "group_members_user_id_index" on "group_members" ("user_id");`);

    this.addSql(`alter table "permissions" add constraint "permissions_microservice_name_foreign" foreign key ("microservice_name") references "microservices" ("name") on delete cascade;`);

    this.addSql(`alter table "groups" add constraint "groups_tenant_id_foreign" foreign key ("tenant_id") references "tenants" ("id") on delete cascade;`);

    this.addSql(`alter table "tenant_domains" add constraint "tenant_domains_tenant_id_foreign" foreign key ("tenant_id") references "tenants" ("id") on delete cascade;`);

    this.addSql(`alter table "users" add constraint "users_tenant_id_foreign" foreign key ("tenant_id") references "tenants" ("id") on delete cascade;`);

    this.addSql(`alter table "sessions" add constraint "sessions_tenant_id_foreign" foreign key ("tenant_id") references "tenants" ("id") on delete cascade;`);
    this.addSql(`alter table "sessions" add constraint "sessions_user_id_foreign" foreign key ("user_id") references "users" ("id") on delete cascade;`);

    this.addSql(`alter table "refresh_tokens" add constraint "refresh_tokens_session_id_foreign" foreign key ("session_id") references "sessions" ("id") on delete cascade;`);

    this.addSql(`alter table "group_members" add constraint "group_members_group_id_foreign" foreign key ("group_id") references "groups" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "group_members" add constraint "group_members_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);
  }

}
