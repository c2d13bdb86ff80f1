package Test::Nginx::WaitingRoom;

# Helpers for the waiting room tests, shared by t/*.t: requests with a
# cookie, and what the answers say (status code, body, X-WR header, queue
# position, the room's cookie, JSON).
#
# Like upstream nginx-tests' lib/Test/Nginx/*.pm, this uses only core Perl and
# the public API of Test::Nginx (http, http_get), so that the tests run with
# our t/lib/Test/Nginx.pm or with upstream's in its place.  Helpers that need
# the test object take it as an argument; none keeps it.

###############################################################################

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT_OK = qw/ req get first post api code body wr pos_of cookie json
	status reload_to log_errors conf_test cookie_kind come_back example /;

use POSIX qw/ WNOHANG /;

use Test::Nginx qw/ http http_get /;

###############################################################################

# requests: HTTP/1.0 to 127.0.0.1:port(8080), as a browser loads a page (only
# page loads may take a place in line), with the Cookie header only if a
# cookie is given, an X-Visitor header (for access logs) if one is, and an
# Accept-Language header if a language is

sub req {
	my ($uri, $cookie, $visitor, $lang) = @_;
	my $c = defined $cookie ? "Cookie: $cookie\n" : '';
	$c .= "Accept-Language: $lang\n" if defined $lang;
	my $v = defined $visitor ? "X-Visitor: $visitor\n" : '';
	return "GET $uri HTTP/1.0\nHost: localhost\n"
		. "Accept: text/html,application/xhtml+xml,*/*;q=0.8\n"
		. "Sec-Fetch-Mode: navigate\nSec-Fetch-Dest: document\n$c$v\n";
}

# get: a browser's visit.  A first contact (no valid cookie) is given an
# arrival, not a place, and the browser comes back at once with it (as the
# queue page's script does): get() does so, and returns that return's answer,
# which shows the place taken.  A first contact admitted at once comes back
# too (as a page's images do), which keeps the session; get() returns the
# first answer then.  first() is a request alone.

sub first {
	return http(req(@_));
}

sub get {
	my ($uri, $cookie, $visitor) = @_;
	return come_back(http(req($uri, $cookie, $visitor)), $uri, $cookie,
		$visitor);
}

# a browser that keeps cookies, after answer $r to a request for $uri sent
# with $cookie (undef: none); @peer are more arguments for http() (PeerAddr)

sub come_back {
	my ($r, $uri, $cookie, $visitor, @peer) = @_;
	my $c = any_cookie($r) or return $r;
	my $kind = cookie_kind($c);
	my ($name) = $c =~ /^([^=]+)=/;
	my $jar = join '; ', $c, grep { !/^\Q$name\E=/ }
		split /;\s*/, $cookie // '';
	return http(req($uri, $jar, $visitor), @peer) if $kind == 3;
	http(req($uri, $jar, $visitor), @peer)
		if $kind == 2 && wr($r) ne 'PASSED';
	return $r;
}

# the first room cookie set in an answer, "wr_<room>=<value>", and its kind:
# 1 a ticket, 2 a session, 3 an arrival (a first contact with no place yet)

sub any_cookie {
	my ($r) = @_;
	return defined $r && $r =~ /^Set-Cookie: (wr_\w[\w-]*=[^;\x0d\x0a]+)/mi
		? $1 : undef;
}

sub cookie_kind {
	my ($c) = @_;
	require MIME::Base64;
	my ($payload) = $c =~ /=([A-Za-z0-9_-]+)\./ or return 0;
	$payload =~ tr!-_!+/!;
	my $bytes = MIME::Base64::decode_base64($payload);
	return length($bytes) > 1 ? ord(substr($bytes, 1, 1)) : 0;
}

sub post {
	my ($uri, $cookie) = @_;
	my $c = defined $cookie ? "Cookie: $cookie\n" : '';
	return http("POST $uri HTTP/1.0\nHost: localhost\n$c"
		. "Content-Length: 0\n\n");
}

# a call of the waiting room API under $prefix, "/_wr/" unless given

sub api {
	my ($method, $what, $cookie, $prefix) = @_;
	$prefix = '/_wr/' unless defined $prefix;
	my $c = defined $cookie ? "Cookie: $cookie\n" : '';
	my $len = $method =~ /^(POST|PUT)$/ ? "Content-Length: 0\n" : '';
	return http("$method $prefix$what HTTP/1.0\nHost: localhost\n"
		. "$c$len\n");
}

###############################################################################

# answers; each takes undef (a failed request) as well

sub code {
	my ($r) = @_;
	return defined $r && $r =~ m!^HTTP/1\.\d (\d{3})! ? $1 : 0;
}

sub body {
	my ($r) = @_;
	return defined $r && $r =~ /\x0d\x0a\x0d\x0a(.*)\z/s ? $1 : '';
}

# $waiting_room_status, as the tests' "add_header X-WR" sends it

sub wr {
	my ($r) = @_;
	return defined $r && $r =~ /^X-WR: (\w+)/m ? $1 : '';
}

# the position on the queue page, 0 if there is none

sub pos_of {
	my ($r) = @_;
	return defined $r && $r =~ m!<strong id="pos">(\d+)</strong>! ? $1 : 0;
}

# "wr_<room>=<value>" of the room's cookie set in the answer, or undef

sub cookie {
	my ($r, $room) = @_;
	return defined $r && $r =~ /^Set-Cookie: (wr_\Q$room\E=[^;\x0d\x0a]+)/mi
		? $1 : undef;
}

# the body as JSON; { state => 'bad' } if it is not

sub json {
	my ($r) = @_;
	require JSON::PP;
	return eval { JSON::PP::decode_json(body($r)) } || { state => 'bad' };
}

# a status page, "/status" unless given

sub status {
	my ($uri) = @_;
	$uri = '/status' unless defined $uri;
	return json(http_get($uri));
}

###############################################################################

# upstream's reload() returns at once: wait until new connections get the
# new configuration, several times in a row.  $uri (default "/gen") returns
# a string unique to each configuration, and $want is that of the new one.
# True if it was seen.

sub reload_to {
	my ($t, $want, $uri) = @_;
	$uri = '/gen' unless defined $uri;
	$t->reload();
	my $seen = 0;
	for (1 .. 100) {
		my $r = http_get($uri);
		$seen = defined $r && $r =~ /\Q$want\E\z/ ? $seen + 1 : 0;
		return 1 if $seen == 5;
		select undef, undef, undef, 0.1 unless $seen;
	}
	return 0;
}

# the [emerg], [alert], [crit] and [error] lines of the test's error.log

sub log_errors {
	my ($t) = @_;
	return join "\n", $t->read_file('error.log')
		=~ /^.*\[(?:emerg|alert|crit|error)\].*$/mg;
}

###############################################################################

# "nginx -t" of test.conf, a configuration with $http in its http block,
# killed if it takes more than 10 s or 512 MB (a secret read from a FIFO or
# /dev/zero would take them all): ($ok, its output and error.log lines, why
# it was killed or undef)

sub conf_test {
	my ($t, $http) = @_;
	my $d = $t->testdir();

	$t->write_file_expand('test.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

$http
}

EOF

	my $before = -s "$d/error.log" || 0;

	my $pid = fork();
	die "Unable to fork(): $!\n" unless defined $pid;
	if ($pid == 0) {
		open STDOUT, '>', "$d/test.out" or POSIX::_exit(127);
		open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
		{ exec($Test::Nginx::NGINX, '-t', '-p', "$d/", '-c', 'test.conf',
			'-e', 'error.log'); }
		POSIX::_exit(127);
	}

	my ($status, $hung);
	my $t0 = time();
	while (time() - $t0 < 10) {
		if (waitpid($pid, WNOHANG) == $pid) {
			$status = $?;
			last;
		}
		if (rss($pid) > 512 * 1024 * 1024) {
			$hung = 'killed: took over 512 MB';
			last;
		}
		select undef, undef, undef, 0.05;
	}
	if (!defined $status) {
		$hung //= 'killed: still running after 10 s';
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}

	my $out = $t->read_file('test.out');
	$out .= substr($t->read_file('error.log'), $before);

	# "nginx -t" leaves the pid file it tried: it would fool run()

	unlink "$d/nginx.pid";
	return (defined $status && $status == 0, $out, $hung);
}

# resident memory of a process in bytes, 0 if unknown

sub rss {
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/statm" or return 0;
	my (undef, $pages) = split ' ', scalar <$fh>;
	return ($pages || 0) * 4096;
}

###############################################################################

# example: the configuration nginx-conf/$name as the suite runs it: no
# load_module (the harness's globals load the module), two workers, nginx in
# the foreground, the harness's http globals, and the site (127.0.0.1:8000)
# and its origin (:8001) on the ports of 8080 and 8081; ready for
# write_file_expand()

sub example {
	my ($name) = @_;
	require FindBin;
	my $file = "$FindBin::Bin/../nginx-conf/$name";
	open my $fh, '<', $file or die "Can't open $file: $!";
	my $conf = do { local $/; <$fh> };
	$conf =~ s/^\s*load_module\s[^;]*;[^\n]*\n//mg;
	$conf =~ s/^(\s*worker_processes)\s+[^;]*;/$1 2;/m;
	$conf =~ s/^(http\s*\{[^\n]*\n)/$1    %%TEST_GLOBALS_HTTP%%\n/m;
	$conf =~ s/127\.0\.0\.1:8000\b/127.0.0.1:%%PORT_8080%%/g;
	$conf =~ s/127\.0\.0\.1:8001\b/127.0.0.1:%%PORT_8081%%/g;
	return "%%TEST_GLOBALS%%\ndaemon off;\n\n" . $conf;
}

###############################################################################

1;

###############################################################################
