#!/usr/bin/env python3
"""Connections per second through each external authenticator, against
anonymous clients, in one run on one machine.

For each backend the script starts the real server from Debian's packages
on a free loopback port in a temporary directory (redis-server, PostgreSQL,
MariaDB, slapd; a small threaded HTTP service of its own; JWTs signed here),
loads USERS users into it (EMQX's layouts: sha256 with a salt for Redis and
SQL, a plain userPassword for LDAP's bind), starts mqttd with a chain of
that backend alone, and connects every user twice, CONCURRENCY at a time,
each client waiting for its CONNACK (which must be a success) and then
disconnecting:

- first: every user's first login (the backend is asked each time);
- cached: the same logins again (answered from the authenticator's cache,
  `cache_ttl_s` 60; LDAP and the others alike).

It prints one JSON line per backend and pass: connects per second (wall
clock) and the broker's CPU seconds per 1,000 connects, with `anonymous`
(no chain, loopback clients) as the reference for what the broker and this
generator do without a backend. The generator is Python (asyncio), so the
anonymous figure is the generator's ceiling, not the broker's.

Usage: auth_backends.py [--mqttd PATH] [--users 1000] [--concurrency 32]
                        [--only anonymous,http,jwt,redis,postgresql,mysql,ldap]
Loopback only; every wait is bounded; every server it starts is stopped.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

PASSWORD = "bench-s3cret"


def user(n):
    return f"user{n}", f"pw-{n}"


def salted_sha256(password, salt):
    return hashlib.sha256(f"{password}{salt}".encode()).hexdigest()


def wait_port(port, proc, timeout=30):
    benchlib.wait_port(port, proc, timeout)


# ---------------------------------------------------------------- backends


class Redis:
    def __init__(self, workdir, users):
        self.port = benchlib.free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", PASSWORD, "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        lines = []
        for n in range(users):
            name, password = user(n)
            salt = f"salt-{n}"
            lines.append(f"HSET mqtt_user:{name} password_hash {salted_sha256(password, salt)} salt {salt}\n")
        subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", PASSWORD, "--pipe"],
                       input="".join(lines).encode(), check=True, stdout=subprocess.DEVNULL, timeout=60)

    def chain(self):
        return (f'auth.authenticators=[{{ type = "redis", server = "127.0.0.1:{self.port}", '
                f'password = "{PASSWORD}", cmd = "HMGET mqtt_user:${{username}} password_hash salt", '
                f'password_hash = {{ algorithm = "sha256", salt_position = "suffix" }} }}]')

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def as_postgres():
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    return []


class Postgres:
    def __init__(self, workdir, users):
        versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        self.dir = tempfile.mkdtemp(prefix="pg-", dir=workdir)
        with open(os.path.join(self.dir, "pw"), "w") as f:
            f.write(PASSWORD)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for root, dirs, files in os.walk(self.dir):
                for name in [root] + [os.path.join(root, d) for d in dirs + files]:
                    os.chown(name, pw.pw_uid, pw.pw_gid)
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.dir, "data")
        subprocess.run(as_postgres() + [f"{self.bin}/initdb", "-D", data, "-U", "mqtt", "--auth=scram-sha-256",
                                        "-E", "UTF8", "--no-sync", f"--pwfile={self.dir}/pw"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        self.port = benchlib.free_port()
        self.proc = subprocess.Popen(
            as_postgres() + [f"{self.bin}/postgres", "-D", data, "-p", str(self.port), "-c",
                             "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        rows = "".join(f"{user(n)[0]}\t{salted_sha256(user(n)[1], f'salt-{n}')}\tsalt-{n}\n" for n in range(users))
        self.psql("CREATE TABLE mqtt_user (username text PRIMARY KEY, password_hash text, salt text)")
        self.psql("COPY mqtt_user FROM STDIN", rows)

    def psql(self, sql, stdin=None):
        subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "mqtt", "-d",
                        "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                       input=stdin.encode() if stdin else None, env={**os.environ, "PGPASSWORD": PASSWORD},
                       check=True, stdout=subprocess.DEVNULL, timeout=60)

    def chain(self):
        return (f'auth.authenticators=[{{ type = "postgresql", server = "127.0.0.1:{self.port}", '
                f'database = "postgres", username = "mqtt", password = "{PASSWORD}", '
                f'query = "SELECT password_hash, salt FROM mqtt_user WHERE username = ${{username}} LIMIT 1", '
                f'password_hash = {{ algorithm = "sha256", salt_position = "suffix" }} }}]')

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Mariadb:
    def __init__(self, workdir, users):
        self.dir = tempfile.mkdtemp(prefix="maria-", dir=workdir)
        data = os.path.join(self.dir, "data")
        tmp = os.path.join(self.dir, "tmp")
        os.mkdir(tmp)
        subprocess.run(["mariadb-install-db", f"--datadir={data}", f"--tmpdir={tmp}", "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=socket"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.port = benchlib.free_port()
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", f"--socket={self.dir}/sock",
             f"--pid-file={self.dir}/pid", f"--log-error={self.dir}/err", "--user=root",
             "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
             "--innodb-buffer-pool-size=16M", f"--port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, 60)
        values = ",".join(f"('{user(n)[0]}','{salted_sha256(user(n)[1], f'salt-{n}')}','salt-{n}')"
                          for n in range(users))
        self.root(f"CREATE DATABASE mqtt; CREATE USER 'mqtt'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                  f"GRANT ALL ON mqtt.* TO 'mqtt'@'127.0.0.1'; "
                  f"CREATE TABLE mqtt.mqtt_user (username VARCHAR(100) PRIMARY KEY, password_hash VARCHAR(100), "
                  f"salt VARCHAR(40)); INSERT INTO mqtt.mqtt_user VALUES {values};")

    def root(self, sql):
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.dir}/sock", "-u", "root", "-e", sql],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)

    def chain(self):
        return (f'auth.authenticators=[{{ type = "mysql", server = "127.0.0.1:{self.port}", '
                f'database = "mqtt", username = "mqtt", password = "{PASSWORD}", '
                f'query = "SELECT password_hash, salt FROM mqtt_user WHERE username = ${{username}} LIMIT 1", '
                f'password_hash = {{ algorithm = "sha256", salt_position = "suffix" }} }}]')

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Ldap:
    def __init__(self, workdir, users):
        self.dir = tempfile.mkdtemp(prefix="ldap-", dir=workdir)
        os.mkdir(os.path.join(self.dir, "db"))
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write("include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n"
                    "include /etc/ldap/schema/inetorgperson.schema\nmodulepath /usr/lib/ldap\n"
                    f"moduleload back_mdb\npidfile {self.dir}/slapd.pid\ndatabase mdb\nmaxsize 104857600\n"
                    'suffix "dc=example,dc=org"\nrootdn "cn=admin,dc=example,dc=org"\n'
                    f"rootpw {PASSWORD}\ndirectory {self.dir}/db\n"
                    "access to attrs=userPassword by anonymous auth by * none\naccess to * by users read\n")
        entries = ["dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: E\ndc: example\n",
                   "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n"]
        for n in range(users):
            name, password = user(n)
            entries.append(f"dn: uid={name},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
                           f"uid: {name}\ncn: {name}\nsn: {name}\nuserPassword: {password}\n")
        subprocess.run(["/usr/sbin/slapadd", "-f", conf], input="\n".join(entries).encode(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.port = benchlib.free_port()
        self.proc = subprocess.Popen(["/usr/sbin/slapd", "-f", conf, "-h", f"ldap://127.0.0.1:{self.port}/",
                                      "-d", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def chain(self):
        return (f'auth.authenticators=[{{ type = "ldap", server = "127.0.0.1:{self.port}", '
                f'bind_dn = "uid=${{username}},ou=people,dc=example,dc=org" }}]')

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Http:
    """A threaded HTTP service: allow when the password is the user's."""

    def __init__(self, workdir, users):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                name = body.get("username", "")
                ok = name.startswith("user") and body.get("password") == f"pw-{name[4:]}"
                answer = json.dumps({"result": "allow" if ok else "deny"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def chain(self):
        return f'auth.authenticators=[{{ type = "http", url = "http://127.0.0.1:{self.port}/auth" }}]'

    def stop(self):
        self.server.shutdown()


def jwt_token(name):
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": name, "exp": int(time.time()) + 3600}).encode())
    signature = b64(hmac.new(PASSWORD.encode(), header + b"." + claims, hashlib.sha256).digest())
    return (header + b"." + claims + b"." + signature).decode()


class Jwt:
    def __init__(self, workdir, users):
        self.tokens = {user(n)[0]: jwt_token(user(n)[0]) for n in range(users)}

    def chain(self):
        return (f'auth.authenticators=[{{ type = "jwt", secret = "{PASSWORD}", '
                f'verify_claims = {{ sub = "${{username}}" }} }}]')

    def password(self, n):
        return self.tokens[user(n)[0]]

    def stop(self):
        pass


class Anonymous:
    def __init__(self, workdir, users):
        pass

    def chain(self):
        return None

    def stop(self):
        pass


BACKENDS = {"anonymous": Anonymous, "http": Http, "jwt": Jwt, "redis": Redis, "postgresql": Postgres,
            "mysql": Mariadb, "ldap": Ldap}

# --------------------------------------------------------------- the load


def connect_packet(client_id, name, password):
    flags = 0x02 | (0x80 if name else 0) | (0x40 if password else 0)
    body = benchlib.mqtt_string("MQTT") + bytes([4, flags, 0, 60]) + benchlib.mqtt_string(client_id)
    if name:
        body += benchlib.mqtt_string(name)
    if password:
        body += benchlib.mqtt_string(password)
    return benchlib.mqtt_packet(0x10, body)


async def login(port, client_id, name, password):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(connect_packet(client_id, name, password))
        ack = await asyncio.wait_for(reader.readexactly(4), 10)
        if ack[0] >> 4 != 2 or ack[3] != 0:
            raise RuntimeError(f"{name}: CONNACK return code {ack[3]}")
        writer.write(b"\xe0\x00")
        await writer.drain()
    finally:
        writer.close()


async def pass_of(port, users, concurrency, credentials):
    gate = asyncio.Semaphore(concurrency)
    failures = []

    async def one(n):
        async with gate:
            name, password = credentials(n)
            try:
                await login(port, f"c{n}", name, password)
            except Exception as error:  # noqa: BLE001 - counted and shown
                failures.append(str(error))

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(users)))
    return time.monotonic() - started, failures


def measure(name, backend, mqttd, workdir, users, concurrency):
    chain = backend.chain()
    settings = benchlib.Settings()
    broker = benchlib.start_mqttd(mqttd, workdir, settings, [chain] if chain else [], name=f"mqttd-{name}")
    try:
        if name == "anonymous":
            credentials = lambda n: (None, None)  # noqa: E731
        elif name == "jwt":
            credentials = lambda n: (user(n)[0], backend.password(n))  # noqa: E731
        else:
            credentials = user
        for label in ("first", "cached"):
            cpu_before = broker.cpu_s()
            seconds, failures = asyncio.run(pass_of(broker.port, users, concurrency, credentials))
            cpu = broker.cpu_s() - cpu_before
            line = {"backend": name, "pass": label, "users": users, "concurrency": concurrency,
                    "connects_per_sec": round(users / seconds, 1),
                    "broker_cpu_s_per_1000": round(cpu * 1000 / users, 3), "failed": len(failures)}
            if failures:
                line["first_failure"] = failures[0]
            print(json.dumps(line), flush=True)
    finally:
        broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mqttd", default=benchlib.default_mqttd())
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", default=",".join(BACKENDS))
    args = parser.parse_args()
    benchlib.need_executable(args.mqttd, "mqttd (cargo build --release -p mqttd)")
    print(json.dumps({"command": benchlib.command_line(), "machine": benchlib.machine_line()}), flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as workdir:
        os.chmod(workdir, 0o755)
        for name in args.only.split(","):
            if name not in BACKENDS:
                parser.error(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
            backend = BACKENDS[name](workdir, args.users)
            try:
                measure(name, backend, args.mqttd, workdir, args.users, args.concurrency)
            except Exception as error:  # noqa: BLE001 - reported, then the next backend
                print(json.dumps({"backend": name, "error": str(error)}), flush=True)
                failed = True
            finally:
                backend.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
