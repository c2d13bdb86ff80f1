#!/usr/bin/perl

# Tests for steps of the wall clock: the room measures durations with
# nginx's monotonic clock, so a step of an hour forward drops nobody (no
# session idle, no ticket timed out) and a step of an hour back freezes
# nobody (an idle session still ends after "idle" of real time, and the next
# in line is let in).  Only the dates in the cookies follow the wall clock,
# and they have a day of slack.
#
# The clock of nginx, and of nginx only, is stepped with libfaketime (Debian
# package "libfaketime"): preloaded into nginx, it adds the offset read from
# a file in the test directory to the wall clock, and leaves the monotonic
# clock alone.

###############################################################################

use warnings;
use strict;

use Test::More;
use File::Glob qw/ bsd_glob /;
use Time::HiRes qw/ time /;
use Time::Local qw/ timegm /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get api wr cookie json status /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/);

my ($faketime) = grep { -f } map { bsd_glob($_) }
	'/usr/lib/*/faketime/libfaketime.so.1',
	'/usr/lib/faketime/libfaketime.so.1',
	'/usr/local/lib/faketime/libfaketime.so.1';
plan(skip_all => 'no libfaketime.so.1 (Debian package "libfaketime")')
	unless $faketime;

$t->plan(19);

# nginx's master gives the workers only the environment "env" lets through:
# libfaketime reads the name of its file from it at every call (without it the
# workers would not see the steps).  The other settings are read when nginx
# starts, and passed on in case a version of libfaketime reads them later.
# LD_PRELOAD need not be: the workers are forked, not run anew.

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

env FAKETIME_TIMESTAMP_FILE;
env FAKETIME_NO_CACHE;
env FAKETIME_DONT_FAKE_MONOTONIC;
env DONT_FAKE_MONOTONIC;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=c:1m max_active=2 idle=3s heartbeat=1s
                      session=1h queue_timeout=1h claim_window=2s;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room c;
        }

        location /_wr/ {
            waiting_room_api c;
        }

        location = /status {
            waiting_room_status c;
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
$t->write_file('faketime', "+0\n");
chmod 0755, $t->testdir() if $> == 0;

# libfaketime is preloaded into nginx only, not into this script or anything
# else it runs

my %fake = (
	FAKETIME_TIMESTAMP_FILE => $t->testdir() . '/faketime',
	FAKETIME_NO_CACHE => 1,
	FAKETIME_DONT_FAKE_MONOTONIC => 1,
	DONT_FAKE_MONOTONIC => 1,
);

@ENV{keys %fake} = values %fake;
$ENV{LD_PRELOAD} = $faketime;
my $ok = eval { $t->run(); 1 };
delete @ENV{'LD_PRELOAD', keys %fake};
die $@ unless $ok;

###############################################################################

ok(abs(skew()) < 60, 'clock not stepped yet');

my %v;
for my $n (qw/ A B C D /) {
	$v{$n} = cookie(get('/page.html'), 'c');
}
is(join(' ', map { wr(get('/page.html', $v{$_})) } qw/ A B /),
	'PASSED PASSED', 'A and B in');
is(positions(qw/ C D /), 'C:1 D:2', 'C and D waiting');

# an hour forward: nobody has been idle, nobody's ticket has timed out

step($t, '+1h');
my $skew = skew();
ok($skew > 3500 && $skew < 3700, 'clock stepped an hour forward')
	or diag("Date is $skew s from the real time");
check('forward');

# an hour back, two hours back from that

step($t, '-1h');
$skew = skew();
ok($skew > -3700 && $skew < -3500, 'clock stepped an hour back')
	or diag("Date is $skew s from the real time");
check('back');

# and after the step back, time goes on: A stays, B goes quiet and its slot
# frees after "idle" (3 s) of real time, for C

my ($t0, $a_bad, $c_in, $r) = (time(), 0);
while (time() - $t0 < 8) {
	$a_bad++ unless wr(get('/page.html', $v{A})) eq 'PASSED';
	$r = api('GET', 'position', $v{C});
	if (json($r)->{state} ne 'queued') {
		$c_in = time() - $t0;
		last;
	}
	select undef, undef, undef, 0.5;
}

is($a_bad, 0, 'after the steps: A kept in');
ok(defined $c_in && json($r)->{state} eq 'admitted',
	'after the steps: C let in as B went idle')
	or diag(defined $c_in ? 'C: ' . json($r)->{state} : 'C still waits');
diag(sprintf 'C let in after %.1f s', $c_in)
	if defined $c_in && $ENV{TEST_NGINX_VERBOSE};
is(wr(get('/page.html', cookie($r, 'c'))), 'PASSED', 'C passes');
is(positions(qw/ D /), 'D:1', 'D first in line');
is(status()->{sessions_expired}, 1, 'one session expired, B\'s');
is(wr(get('/page.html', $v{B})), 'QUEUED', 'B is a newcomer');

###############################################################################

# the offset libfaketime adds to nginx's wall clock, from now on

sub step {
	my ($t, $offset) = @_;
	$t->write_file('faketime.new', "$offset\n");
	rename $t->testdir() . '/faketime.new', $t->testdir() . '/faketime'
		or die "Can't rename: $!";
}

# the Date of nginx's answers less the real time, in seconds

sub skew {
	my $r = http_get('/status');
	my %month = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
		Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
	return 1e9 unless defined $r
		&& $r =~ /^Date: \w+, (\d+) (\w+) (\d+) (\d+):(\d+):(\d+) GMT/m
		&& defined $month{$2};
	return timegm($6, $5, $4, $1, $month{$2}, $3) - time();
}

# A and B inside, C and D in line at 1 and 2: at once, and a second later

sub check {
	my ($when) = @_;
	for my $later (0, 1) {
		sleep 1 if $later;
		my $at = $later ? "$when, a second later" : $when;
		is(join(' ', map { wr(get('/page.html', $v{$_})) } qw/ A B /),
			'PASSED PASSED', "$at: A and B in");
		is(positions(qw/ C D /), 'C:1 D:2', "$at: C and D waiting");
	}
}

# "name:position" while waiting, "name:state" otherwise

sub positions {
	return join ' ', map {
		my $j = json(api('GET', 'position', $v{$_}));
		"$_:" . ($j->{state} eq 'queued' ? $j->{position} : $j->{state})
	} @_;
}

###############################################################################
