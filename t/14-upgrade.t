#!/usr/bin/perl

# Tests for a binary upgrade (USR2, then WINCH and QUIT to the old master)
# with a state file: the new master restores the room and stands by while the
# old one runs it, so that one room admits, never two; once the old master
# has stopped, the new one takes over with everything the old one did last.

###############################################################################

use warnings;
use strict;

use Test::More;
use POSIX qw/ WNOHANG /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get api wr pos_of cookie json status /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(11);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon on;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=r:1m max_active=2 idle=60s heartbeat=1s
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
    }
}

EOF

$t->write_file('page.html', "a page\n");
$t->write_file('secret.key', 'k' x 40);
chmod 0755, $t->testdir() if $> == 0;
$t->run();

###############################################################################

my $d = $t->testdir();
my %v;
for my $n (qw/ A B C D E /) {
	$v{$n} = cookie(get('/page.html'), 'r');
}
is(positions(qw/ C D E /), 'C:1 D:2 E:3', 'before the upgrade');
select undef, undef, undef, 1.5;

# USR2: a second master, with the same binary, starts beside the first (nginx
# takes USR2 only from a master in the background: "daemon on" here)

my $old = $t->read_file('nginx.pid') + 0;
kill 'USR2', $old;
my $new = 0;
for (1 .. 100) {
	$new = -e "$d/nginx.pid.oldbin" && -e "$d/nginx.pid"
		? $t->read_file('nginx.pid') + 0 : 0;
	last if $new && $new != $old && waitfor($t, qr/stands by until it stops/, 0);
	select undef, undef, undef, 0.1;
}
ok($new && $new != $old, 'new master started');
ok(waitfor($t, qr/\[notice\].*nginx process $old still runs the room, this one stands by/, 5),
	'the new master stands by');

# both masters' workers answer: never more than max_active inside, and the
# newcomers of either join the one line

my ($most, @g) = (0);
for my $i (1 .. 20) {
	my $r = get('/page.html');
	push @g, cookie($r, 'r') if pos_of($r);
	my $a = status()->{active_sessions} || 0;
	$most = $a if $a > $most;
}
ok($most <= 2, "never more than max_active inside ($most)");

# the old master's workers go, then the old master: the new one takes over

kill 'WINCH', $old;
select undef, undef, undef, 0.5;
kill 'QUIT', $old;
my $gone = 0;
for (1 .. 100) {
	$gone = waitpid($old, WNOHANG) == $old || !kill(0, $old);
	last if $gone;
	select undef, undef, undef, 0.1;
}
ok($gone, 'old master stopped');
ok(waitfor($t, qr/\[notice\].*takes over from nginx process $old with 2 sessions/, 10),
	'the new master takes over');

like(get('/page.html', $v{A}), qr/^X-WR: PASSED/m, 'A passes after the upgrade');
like(get('/page.html', $v{B}), qr/^X-WR: PASSED/m, 'B passes after the upgrade');
is(positions(qw/ C D E /), 'C:1 D:2 E:3', 'line kept in order');
my $st = status();
is(join(' ', @$st{qw/ active_sessions standby /}), '2 0', 'one room, running');
my @held = grep { defined } map {
	my $j = json(api('GET', 'position', $_));
	$j->{state} eq 'queued' ? $j->{position} : undef } grep { defined } @g;
ok(!grep({ $_ <= 3 } @held), 'newcomers of the overlap are behind the line');

# the harness stops the new master; wait until it has gone

$t->stop();
for (1 .. 100) {
	last unless kill 0, $new;
	select undef, undef, undef, 0.1;
}

###############################################################################

sub positions {
	return join ' ', map {
		my $j = json(api('GET', 'position', $v{$_}));
		"$_:" . ($j->{state} eq 'queued' ? $j->{position} : $j->{state})
	} @_;
}

sub waitfor {
	my ($t, $re, $seconds) = @_;
	for (0 .. $seconds * 10) {
		return 1 if $t->read_file('error.log') =~ $re;
		select undef, undef, undef, 0.1 if $seconds;
	}
	return 0;
}

###############################################################################
