#!/usr/bin/env python3
# A scripted stand-in for qmpd's broker commands, for developing the broker
# without the daemon: fake-qmpd.py SOCKET. Users alice/pw-alice (d1, d2)
# and bob/pw-bob (d3); five failures lock a login for 30 s.
import asyncio
import json
import os
import sys
import time
import secrets

USERS = {'alice': 'pw-alice', 'bob': 'pw-bob'}
OWNER = {'d1': 'alice', 'd2': 'alice', 'd3': 'bob'}
STATE = {'d1': 'stopped', 'd2': 'running', 'd3': 'stopped'}
PORT = {'d1': 5931, 'd2': 5932, 'd3': 5933}
fails = {}
locked = {}


def handle(cmd, a):
    if cmd == 'user.auth':
        login = a['login']
        if locked.get(login, 0) > time.time():
            return None, ('Locked', 'too many failed logins: locked for %d s'
                          % int(locked[login] - time.time() + 1))
        if USERS.get(login) != a['password']:
            fails[login] = fails.get(login, 0) + 1
            if fails[login] >= 5:
                locked[login] = time.time() + 30
                fails[login] = 0
            return None, ('AuthFailed', 'bad login or password')
        fails[login] = 0
        return {'login': login, 'name': login.title(), 'dept': 'it',
                'admin': False}, None
    if cmd == 'desktop.mine':
        return {'desktops': [{'name': n, 'state': STATE[n], 'pool': None,
                              'spice': {'host': '127.0.0.1', 'port': PORT[n]}}
                             for n in sorted(OWNER) if OWNER[n] == a['login']]}, None
    vm = a.get('vm')
    if vm not in OWNER:
        return None, ('NotFound', 'no VM named %s' % vm)
    if OWNER[vm] != a['login']:
        return None, ('PermissionDenied', 'VM %s is not yours' % vm)
    if cmd == 'desktop.power':
        act = a['action']
        if act == 'start':
            if STATE[vm] == 'running':
                return None, ('InvalidState', 'VM %s is running' % vm)
            STATE[vm] = 'running'
        elif act == 'shutdown':
            STATE[vm] = 'stopped'
        return {'name': vm, 'state': STATE[vm]}, None
    if cmd == 'desktop.console':
        if STATE[vm] != 'running':
            return None, ('InvalidState', 'VM %s is stopped: start it first' % vm)
        pw = secrets.token_hex(16)
        return {'uri': 'spice://127.0.0.1:%d?password=%s' % (PORT[vm], pw),
                'host': '127.0.0.1', 'port': PORT[vm], 'password': pw,
                'expires': int(time.time()) + a.get('expires', 60)}, None
    return None, ('CommandNotFound', 'no command %s' % cmd)


async def client(reader, writer):
    writer.write(b'{"qdesk":{"version":"fake","protocol":1}}\n')
    while True:
        line = await reader.readline()
        if not line:
            break
        req = json.loads(line)
        ret, err = handle(req['cmd'], req.get('args', {}))
        if err:
            out = {'id': req['id'], 'error': {'class': err[0], 'desc': err[1]}}
        else:
            out = {'id': req['id'], 'return': ret}
        writer.write((json.dumps(out) + '\n').encode())
        await writer.drain()
    writer.close()


async def main(path):
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(client, path)
    os.chmod(path, 0o666)
    async with server:
        await server.serve_forever()

asyncio.run(main(sys.argv[1]))
