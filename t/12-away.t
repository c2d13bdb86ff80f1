#!/usr/bin/perl

# Tests for "away", what heartbeat.js sends when a page is left: a reload, a
# click to another page or another tab seen within the grace keeps the
# session and its cookie; a visitor who does not come back frees the slot
# after the grace; a ticket left is lost after the grace; "grace" must be
# shorter than "idle".

###############################################################################

use warnings;
use strict;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get api code wr json cookie conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(16);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=r:1m max_active=1 idle=6s heartbeat=1s grace=1s;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room r;
        }

        location /_wr/ {
            waiting_room_api r;
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
chmod 0755, $t->testdir() if $> == 0;

# "grace" must be shorter than "idle"

my ($ok, $out) = conf_test($t,
	'waiting_room_zone zone=g:1m idle=6s heartbeat=1s grace=6s;');
like($out, qr/\[emerg\].*"grace=6s" must be shorter than "idle=6s"/,
	'grace as long as idle: refused');

$t->run();

###############################################################################

my %v;
for my $n (qw/ A B C /) {
	$v{$n} = cookie(get('/page.html'), 'r');
}
is(join(' ', map { wr(get('/page.html', $v{$_})) } qw/ A B C /),
	'PASSED QUEUED QUEUED', 'A in, B and C waiting');

# a reload: away, then the page again at once; the cookie is not cleared

my $r = api('POST', 'away', $v{A});
is(code($r), 204, 'away: 204');
unlike($r, qr/^Set-Cookie/mi, 'away: the cookie is kept');
is(wr(get('/page.html', $v{A})), 'PASSED', 'reloaded: A still in');

# seen again, the grace is over: A stays past it

select undef, undef, undef, 2.5;
is(wr(get('/page.html', $v{A})), 'PASSED', 'seen again: A kept after the grace');
is(json(api('GET', 'position', $v{B}))->{position}, 1, 'B still first');

# C leaves its page in line, and does not come back

is(code(api('POST', 'away', $v{C})), 204, 'away with a ticket: 204');

# A closes the site: the slot frees after the grace (and the next sweep), for B

is(code(api('POST', 'away', $v{A})), 204, 'A away');
my ($t0, $in) = (time());
while (time() - $t0 < 5) {
	$r = api('GET', 'position', $v{B});
	last if ($in = json($r)->{state} eq 'admitted');
	select undef, undef, undef, 0.2;
}
ok($in, 'A gone: B let in');
ok(time() - $t0 >= 0.8, 'not before the grace');
is(wr(get('/page.html', cookie($r, 'r'))), 'PASSED', 'B passes');
is(wr(get('/page.html', $v{A})), 'QUEUED', 'A is a newcomer');
is(code(api('GET', 'position', $v{C})), 403, 'C lost its place');

# without a place, or not a POST

is(code(api('POST', 'away')), 403, 'away without a cookie: 403');
like(api('GET', 'away', $v{B}), qr/^HTTP\/1\.\d 405.*^Allow: POST/ms,
	'away GET: 405');

###############################################################################
