#!/usr/bin/perl

# Tests for the state file (waiting_room_zone ... state=): a restart keeps
# every session, the whole line in order, the counters and the cookies; a
# zone size change on reload carries the room over; a damaged, truncated,
# foreign or older-format file is refused with a log line, set aside, and the
# room starts empty without letting anyone in on its say.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http http_get /;
use Test::Nginx::WaitingRoom qw/ get api pos_of cookie json status reload_to /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(28);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=r:SIZE max_active=2 idle=60s heartbeat=1s
                      state=r.state;

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

        location = /control {
            waiting_room_control r;
        }

        location = /gen {
            return 200 "GEN";
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
$t->write_file('secret.key', 'k' x 40);
chmod 0755, $t->testdir() if $> == 0;

$t->write_file_expand('nginx.conf', conf('1m', 'one'));
$t->run();

###############################################################################

# A, B in; C, D, E in line

my %v;
for my $n (qw/ A B C D E /) {
	$v{$n} = cookie(get('/page.html'), 'r');
}
is(positions(qw/ C D E /), 'C:1 D:2 E:3', 'before the restart');
ok(-f $t->testdir() . '/r.state', 'state file made');

# a run-time change is kept in the state file too (a rate high enough to
# slow nobody here)

like(http("POST /control HTTP/1.0\nHost: localhost\nContent-Length: 20\n\n"
	. '{"rate":"600r/m"}   '), qr/"rate":"600r\/m"/, 'rate set at run time');
select undef, undef, undef, 1.5;

# a graceful stop and a start: everyone where they were

$t->stop();
$t->run();

like(get('/page.html', $v{A}), qr/^X-WR: PASSED/m, 'A passes after restart');
like(get('/page.html', $v{B}), qr/^X-WR: PASSED/m, 'B passes after restart');
is(positions(qw/ C D E /), 'C:1 D:2 E:3', 'line kept in order');
my $st = status();
is(join(' ', @$st{qw/ active_sessions queue_length admitted_total
	joined_total standby /}), '2 3 2 3 0', 'counters kept');
my $r = get('/page.html');
is(pos_of($r), 4, 'a newcomer joins behind them');
$v{F} = cookie($r, 'r');
like($t->read_file('error.log'),
	qr/\[notice\].*restored 2 sessions and 3 places in line from ".*r\.state"/,
	'restore logged');
like(http_get('/control'), qr/"rate":"600r\/m"/, 'the change kept over a restart');

# the room goes on: A leaves, C is let in

like(api('POST', 'leave', $v{A}), qr/^HTTP\/1\.\d 204/, 'A leaves');
is(json(api('GET', 'position', $v{C}))->{state}, 'admitted', 'C let in');

# a bigger zone on reload: the room is carried over

$t->write_file_expand('nginx.conf', conf('2m', 'two'));
ok(reload_to($t, 'two'), 'reloaded with a bigger zone');
like(get('/page.html', $v{B}), qr/^X-WR: PASSED/m, 'B passes in the new zone');
is(positions(qw/ D E F /), 'D:1 E:2 F:3', 'line carried over');
like($t->read_file('error.log'),
	qr/\[notice\].*zone "r" resized: 2 sessions and 3 places/,
	'resize logged');

# and saved from the new zone: a restart still finds everyone

select undef, undef, undef, 1.5;
$t->stop();
$t->run();
like(get('/page.html', $v{B}), qr/^X-WR: PASSED/m, 'B passes after resize and restart');
is(positions(qw/ D E F /), 'D:1 E:2 F:3', 'line kept after resize and restart');
$t->stop();

# files that must not be taken: each is refused, set aside, and the room
# starts empty; nobody gets in on a cookie from before

my $file = $t->testdir() . '/r.state';
my $good = $t->read_file('r.state');
my %bad = (
	'not a state file' => "#!/bin/sh\nrm -rf /\n" . "\0" x 5000,
	'truncated' => substr($good, 0, 3000),
	'older format' => substr($good, 0, 8) . pack('Q<', 0) . substr($good, 16),
	'damaged' => damage($good),
);
my %why = (
	'not a state file' => 'it is not a waiting room state file',
	'truncated' => 'it is truncated',
	'older format' => 'it has format 0, this module reads format 1',
	'damaged' => 'its content does not match its checksum',
);

for my $case (sort keys %bad) {
	$t->write_file('r.state', $bad{$case});
	unlink "$file.refused";
	$t->run();
	if ($case eq 'not a state file') {
		# perhaps another file named by mistake: left as it is, not saved over
		like($t->read_file('error.log'),
			qr/\[error\].*".*r\.state" is not a waiting room state file and is left as it is; the room starts empty and is not saved/,
			"$case: refused");
	} else {
		like($t->read_file('error.log'),
			qr/\[error\].*state file ".*r\.state" is not used, \Q$why{$case}\E; the room starts empty, it is kept as ".*r\.state\.refused"/,
			"$case: refused");
	}
	unlike(get('/page.html', $v{B}), qr/^X-WR: PASSED/m,
		"$case: nobody in on an old cookie");
	$t->stop();
}

# another secret: the file is refused (its cookies could not be checked)

$t->write_file('r.state', $good);
$t->write_file('secret.key', 'z' x 40);
$t->run();
like($t->read_file('error.log'),
	qr/\[error\].*is not used, it was saved with another waiting_room_secret, or with none/,
	'another secret: refused');
is(join(' ', @{status()}{qw/ active_sessions queue_length joined_total /}),
	'0 0 0', 'another secret: starts empty');
$t->stop();

###############################################################################

sub conf {
	my ($size, $gen) = @_;
	(my $c = $conf) =~ s/SIZE/$size/;
	$c =~ s/GEN/$gen/;
	return $c;
}

sub positions {
	return join ' ', map {
		my $j = json(api('GET', 'position', $v{$_}));
		"$_:" . ($j->{state} eq 'queued' ? $j->{position} : $j->{state})
	} @_;
}

# both image slots' first bytes flipped: neither matches its checksum

sub damage {
	my ($s) = @_;
	my $slot = unpack('Q<', substr($s, 32, 8));
	for my $at (4096, 4096 + $slot) {
		substr($s, $at + 40, 1) = chr(ord(substr($s, $at + 40, 1)) ^ 0xff);
	}
	return $s;
}

###############################################################################
