#!/usr/bin/perl

# Tests for reloads ("nginx -s reload", HUP): with the same zone size and a
# max_active the zone's session table holds, sessions and the queue are
# kept, the random cookie key too, and the new workers carry on (leave, call,
# sweep); a max_active beyond the table's capacity is refused, and the room
# goes on as it was; a new zone size carries the room over.

###############################################################################

use warnings;
use strict;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get api code pos_of json reload_to status /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(33);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=r:SIZE max_active=MAX idle=4s heartbeat=1s;

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

        location = /status {
            waiting_room_status r;
        }

        location = /gen {
            return 200 "GEN";
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
chmod 0755, $t->testdir() if $> == 0;

$t->write_file_expand('nginx.conf', conf($conf, 2, 'one'));
$t->run();

###############################################################################

# A, B in; C, D, E waiting

my %v;
for my $n (qw/ A B C D E /) {
	$v{$n} = cookie(get('/page.html'));
}
is(positions(qw/ C D E /), 'C:1 D:2 E:3', 'before reload');

# reload with the same zone: everything is kept, the random key too

$t->write_file_expand('nginx.conf', conf($conf, 2, 'two'));
ok(reload_to($t, 'two'), 'reloaded');

like(get('/page.html', $v{A}), qr/^X-WR: PASSED/m, 'A passes');
like(get('/page.html', $v{B}), qr/^X-WR: PASSED/m, 'B passes');
is(positions(qw/ C D E /), 'C:1 D:2 E:3', 'positions kept');

my $r = get('/page.html', $v{D});
ok(pos_of($r) == 2 && !cookie($r), 'D page: same place, same ticket');

my $st = json(http_get('/status'));
is(join(' ', @$st{qw/ active_sessions queue_length admitted_total
	joined_total /}), '2 3 2 3', 'status kept');
my $cap1 = $st->{queue_capacity} || 0;

$r = get('/page.html');
ok(pos_of($r) == 4, 'newcomer F after the reload joins the end');
$v{F} = cookie($r);

like($t->read_file('error.log'), qr/\[notice\].*no waiting_room_secret/,
	'random key notice');
unlike($t->read_file('error.log'), qr/\[warn\].*waiting room/,
	'no warning on a plain reload');

# the new workers carry on: A leaves, C is called and let in

like(api('POST', 'leave', $v{A}), qr/^HTTP\/1\.\d 204/, 'A leaves');
$r = api('GET', 'position', $v{C});
is(json($r)->{state}, 'admitted', 'C let in');
$v{C} = cookie($r);
like(get('/page.html', $v{C}), qr/^X-WR: PASSED/m, 'C passes');
is(positions(qw/ D E F /), 'D:1 E:2 F:3', 'positions move');

# two reloads in a row, one right after the other

$t->write_file_expand('nginx.conf', conf($conf, 2, 'three'));
$t->reload();
$t->write_file_expand('nginx.conf', conf($conf, 2, 'four'));
ok(reload_to($t, 'four'), 'reloaded twice');

like(get('/page.html', $v{B}), qr/^X-WR: PASSED/m, 'B passes');
like(get('/page.html', $v{C}), qr/^X-WR: PASSED/m, 'C passes');
is(positions(qw/ D E F /), 'D:1 E:2 F:3', 'positions kept twice');

# the new workers' sweep runs: B and C stop being seen (idle=4s), and D and E
# are called and let in

my $t0 = time();
my ($d_in, $e_in);
while (time() - $t0 < 8 && !($d_in && $e_in)) {
	$d_in ||= json(api('GET', 'position', $v{D}))->{state} eq 'admitted';
	$e_in ||= json(api('GET', 'position', $v{E}))->{state} eq 'admitted';
	api('GET', 'position', $v{F});
	select undef, undef, undef, 0.2;
}
ok($d_in && $e_in, 'swept after reload: D and E let in');
is(json(http_get('/status'))->{sessions_expired}, 2, 'expired counted');
is(json(api('GET', 'position', $v{F}))->{position}, 1, 'F first');

# a max_active beyond what the zone's session table holds (2 + 64 here) would
# need a new layout: the reload is refused, and the running room goes on as it
# was (a change within the table keeps everyone: see t/10-hardening.t)

$t->write_file_expand('nginx.conf', conf($conf, 70, 'five'));
$t->reload();
my $refused = 0;
for (1 .. 50) {
	$refused = $t->read_file('error.log') =~ /\[emerg\].*waiting room zone "r": max_active=70 is more than the zone's session table holds \(66\)/;
	last if $refused;
	select undef, undef, undef, 0.1;
}
ok($refused, 'max_active beyond the table refused');
like(http_get('/gen'), qr/four\z/, 'the running configuration goes on');
is(status()->{max_sessions}, 2, 'max_active as it was');
is(json(api('GET', 'position', $v{F}))->{position}, 1, 'F still first');

# a reload with a max_active the table holds keeps the room and puts the new
# max_active in force: F is let in by the raise

$t->write_file_expand('nginx.conf', conf($conf, 4, 'six'));
ok(reload_to($t, 'six'), 'reloaded with max_active=4');
$r = api('GET', 'position', $v{F});
is(json($r)->{state}, 'admitted', 'F let in by the raise');
like(get('/page.html', cookie($r)), qr/^X-WR: PASSED/m, 'F passes');
is(status()->{max_sessions}, 4, 'max_active=4 in force');

# a changed zone size: nginx makes a new zone, and the room is carried over
# into it

my $before = status();
my $f = cookie($r);
$t->write_file_expand('nginx.conf', conf($conf, 3, 'seven', '2m'));
ok(reload_to($t, 'seven'), 'reloaded with a bigger zone');
$st = json(http_get('/status'));
is(join(' ', @$st{qw/ active_sessions queue_length admitted_total /}),
	join(' ', @$before{qw/ active_sessions queue_length admitted_total /}),
	'new zone: the room carried over');
ok($st->{queue_capacity} > $cap1, 'new zone: bigger queue');
like(get('/page.html', $f), qr/^X-WR: PASSED/m, 'new zone: F passes');

###############################################################################

sub conf {
	my ($c, $max, $gen, $size) = @_;
	$size = '1m' unless defined $size;
	$c =~ s/SIZE/$size/;
	$c =~ s/MAX/$max/;
	$c =~ s/GEN/$gen/;
	return $c;
}

sub positions {
	return join ' ', map {
		my $j = json(api('GET', 'position', $v{$_}));
		"$_:" . ($j->{state} eq 'queued' ? $j->{position} : $j->{state})
	} @_;
}

# the cookie of room "r", '' if none

sub cookie {
	my ($r) = @_;
	return Test::Nginx::WaitingRoom::cookie($r, 'r') // '';
}

###############################################################################
