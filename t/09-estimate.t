#!/usr/bin/perl

# Tests for the wait estimate: from the configuration before anyone has left,
# then from the measured pace, in the position poll, on the queue page and in
# $waiting_room_wait, growing with the position; and the measured rates in
# the status page.

###############################################################################

use warnings;
use strict;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get api json /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(15);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_zone zone=est:1m max_active=1;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;
        add_header X-WR-Wait $waiting_room_wait always;

        location / {
            waiting_room est;
        }

        location /_wr/ {
            waiting_room_api est;
        }

        location = /status {
            waiting_room_status est;
        }
    }
}

EOF

$t->write_file('page.html', "a page\n");
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

# A is in, 70 wait

my $in = cookie(get('/page.html'));
my @line = map { cookie(get('/page.html')) } 1 .. 70;

# at first, from the configuration: a visit of 1.5 x idle (90s) and a sixth of
# claim_window (30s) to claim the slot, for the one slot: 140s a place

my $j = json(get('/_wr/position', $line[0]));
ok($j->{state} eq 'queued' && ($j->{eta_seconds} // 0) >= 120
	&& $j->{eta_seconds} <= 200, 'an estimate from the configuration at first')
	or diag($j->{eta_seconds} // 'null');
my $r = get('/page.html', $line[0]);
like($r, qr/<dd id="eta">about \d+ minutes?</, 'page: an estimate at first');
like($r, qr/^X-WR-Wait: \d+/m, '$waiting_room_wait at first');

# the line moves: every half second the one inside leaves and the first in
# line is let in, until the pace is measured (the status page publishes the
# call rate after some 20 seconds of measuring it)

my $t0 = time();
my ($moved, $st) = (0, {});
while (time() - $t0 < 40 && @line > 10) {
	api('POST', 'leave', $in);
	my $next = shift @line;
	$r = get('/_wr/position', $next);
	$moved++ if json($r)->{state} eq 'admitted';
	$in = cookie($r);
	$st = json(http_get('/status'));
	last if defined $st->{called_per_minute} && $st->{called_per_minute} > 0;
	select undef, undef, undef, 0.5;
}

ok($moved >= 5, "the line moved ($moved)");
ok(defined $st->{called_per_minute} && $st->{called_per_minute} > 0,
	'status: called per minute');
ok(defined $st->{admitted_per_minute} && $st->{admitted_per_minute} > 0,
	'status: admitted per minute');
ok(defined $st->{avg_wait_seconds} && $st->{avg_wait_seconds} > 0,
	'status: average wait');

# the estimate now: about a visitor every half second

my $e1 = json(get('/_wr/position', $line[0]))->{eta_seconds};
my $e2 = json(get('/_wr/position', $line[9]))->{eta_seconds};
ok(defined $e1 && $e1 =~ /^\d+$/ && $e1 >= 1 && $e1 <= 30,
	'estimate for the first') or diag($e1 // 'null');
ok(defined $e2 && $e2 =~ /^\d+$/ && $e2 <= 120,
	'estimate for the tenth') or diag($e2 // 'null');
ok(defined $e1 && defined $e2 && $e2 > $e1, 'estimate grows with position');

$r = get('/page.html', $line[9]);
unlike($r, qr/<dd id="eta"[^>]*>being measured/, 'page: an estimate');
like($r,
	qr/<dd id="eta">(?:less than a minute|about \d+ minutes?)</,
	'page: estimate in words');
my ($wait) = $r =~ /^X-WR-Wait: (\d+)/m;
ok(defined $wait && $wait >= $e1, '$waiting_room_wait');

# the one let in has waited: $waiting_room_wait

api('POST', 'leave', $in);
$r = get('/page.html', $line[0]);
like($r, qr/^X-WR: ADMITTED/m, 'let in on page load');
my ($waited) = $r =~ /^X-WR-Wait: (\d+)/m;
ok(defined $waited && $waited >= 1, 'waited seconds') or diag($waited);

###############################################################################

# the cookie of room "est", '' if none

sub cookie {
	my ($r) = @_;
	return Test::Nginx::WaitingRoom::cookie($r, 'est') // '';
}

###############################################################################
