#!/usr/bin/env python3
"""Write the data set of scripts/bench-smtp.sh into one folder.

smtp-source -N sends message i (1, 2, ...) to "<i><local>@<domain>", so
every recipient 1..COUNT exists. Every fourth number (and 0) is a user's
primary address in the Keycloak development directory. The others are
aliases in PostgreSQL that point at the user below them. Files written:

  realm.json      the demo realm (--base-realm) plus the generated users
  data.sql        domains and aliases for psql, after mailcloakctl migrate
  domains.txt     Postfix lookup table sources with the same data, for
  aliases.txt     postmap (hash: tables) in the setups without mailcloak
  mailboxes.txt
"""

import argparse
import json
import os
import sys

# Extra domains, so that the domain table contains more than the one that mail goes to.
EXTRA_DOMAINS = ["example.net", "example.org", "mail.example.test"]
USER_EVERY = 4


def user_number(number):
    """Return the number of the user that recipient `number` belongs to."""
    return number - number % USER_EVERY


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, required=True, help="recipients 1..COUNT to create")
    parser.add_argument("--local", default="r", help="local part after the number (default r)")
    parser.add_argument("--domain", default="example.com", help="domain of every recipient")
    parser.add_argument("--base-realm", required=True, help="realm file whose clients and users are kept")
    parser.add_argument("--out", required=True, help="folder to write the files into")
    arguments = parser.parse_args()
    if not 1 <= arguments.count <= 1_000_000:
        parser.error(f"invalid --count {arguments.count}: expected 1 to 1000000")
    if not arguments.local.isalnum() or not arguments.local.islower():
        parser.error(f"invalid --local {arguments.local!r}: expected lower-case letters and digits")
    return arguments


def write_realm(arguments, users):
    with open(arguments.base_realm, encoding="utf-8") as handle:
        realm = json.load(handle)
    for address in users:
        realm["users"].append({
            "username": address.split("@")[0],
            "email": address,
            "enabled": True,
            "emailVerified": True,
        })
    with open(os.path.join(arguments.out, "realm.json"), "w", encoding="utf-8") as handle:
        json.dump(realm, handle)


def write_sql(arguments, aliases):
    with open(os.path.join(arguments.out, "data.sql"), "w", encoding="utf-8") as handle:
        handle.write("BEGIN;\n")
        for domain in [arguments.domain] + EXTRA_DOMAINS:
            handle.write(f"INSERT INTO domains (name) VALUES ('{domain}') ON CONFLICT DO NOTHING;\n")
        handle.write("COPY aliases (address, username) FROM STDIN;\n")
        for address, username in aliases:
            handle.write(f"{address}\t{username}\n")
        handle.write("\\.\nCOMMIT;\n")


def write_tables(arguments, users, aliases):
    with open(os.path.join(arguments.out, "domains.txt"), "w", encoding="utf-8") as handle:
        for domain in [arguments.domain] + EXTRA_DOMAINS:
            handle.write(f"{domain} {domain}\n")
    with open(os.path.join(arguments.out, "aliases.txt"), "w", encoding="utf-8") as handle:
        for address, username in aliases:
            handle.write(f"{address} {username}@{arguments.domain}\n")
    with open(os.path.join(arguments.out, "mailboxes.txt"), "w", encoding="utf-8") as handle:
        for address in users:
            handle.write(f"{address} {address}\n")


def main():
    arguments = parse_arguments()
    os.makedirs(arguments.out, exist_ok=True)
    users = []
    aliases = []
    for number in range(0, arguments.count + 1):
        address = f"{number}{arguments.local}@{arguments.domain}"
        if number % USER_EVERY == 0:
            users.append(address)
        else:
            aliases.append((address, f"{user_number(number)}{arguments.local}"))
    write_realm(arguments, users)
    write_sql(arguments, aliases)
    write_tables(arguments, users, aliases)
    print(f"{len(users)} users, {len(aliases)} aliases, {1 + len(EXTRA_DOMAINS)} domains", file=sys.stderr)


if __name__ == "__main__":
    main()
