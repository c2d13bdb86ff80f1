(function(){
// This script checks the visitor's place itself: it cancels the page's own reload (the
// Refresh header that serves browsers without JavaScript) and polls the API instead.
window.stop();
var C={{ {"api": api, "refresh": refresh, "arrival": arrival, "starts_in": starts_in, "draw": draw, "lang": lang, "back": back, "cookies": cookies_url}|tojson }},
T={{ t_json }},
D=document,ttl=D.title,base=+C.refresh||5,wait=base,due=0,busy=0,paused=0,at=null,tm,pt,arr=C.arrival,
PR=window.Intl&&Intl.PluralRules?new Intl.PluralRules(C.lang):null;
function $(i){return D.getElementById(i)}
function set(i,v){var e=$(i);if(e.textContent!==String(v))e.textContent=v}
function tx(k,n,shown){var v=T[k];if(v&&typeof v=='object')v=v[PR?PR.select(n):'other']||v.other;return String(v||'').replace('{n}',shown==null?n:shown)}
function put(e,text,id,value){
// A text with {n} into element e, the number in a <strong id=id>.
var p=text.split('{n}'),s=D.createElement('strong');s.id=id;s.textContent=value;
e.textContent='';e.appendChild(D.createTextNode(p[0]));e.appendChild(s);if(p[1])e.appendChild(D.createTextNode(p[1]))}
function two(n){return(n<10?'0':'')+n}
function cdn(s){var d=s/86400|0,h=s/3600%24|0;return(d?tx('days',d)+' ':'')+(d||h?two(h)+':':'')+two(s/60%60|0)+':'+two(s%60)}
function eta(s){
if(s==null||s===''||isNaN(s))return T.eta_unknown;
if(s<60)return T.eta_under_minute;
if(s<=5400){var m=Math.round(s/60);return tx('eta_minutes',m)}
var h=Math.round(s/3600);return tx('eta_hours',h)}
function etaMax(s){
if(s==null||s===''||isNaN(s))return'';
if(s<60)return' ('+T.eta_max_minute+')';
if(s<=5400){var m=Math.ceil(s/60);return' ('+tx('eta_max_minutes',m)+')'}
var h=Math.ceil(s/3600);return' ('+tx('eta_max_hours',h)+')'}
function say(t){set('say',t)}
function stamp(){var c=$('chk');c.textContent=tx('last_checked',0,new Date().toLocaleTimeString(C.lang));c.hidden=false}
function show(d){
var s=d.starts_in,n=+d.draw||0,b=s!=null&&s!==''?'bs':n?'bd':'bp';
['bp','bd','bs'].forEach(function(i){$(i).hidden=i!==b});
at=b=='bs'?Date.now()+s*1000:null;
set('so',n?T.order_draw:T.order_fifo);
if(n&&$('dn').textContent!=String(n))put($('dt'),tx('drawn_among',n),'dn',n);
if(d.position!=null)set('pos',d.position);
D.title=(b=='bd'?T.in_draw.replace(/[.。]$/,''):'#'+$('pos').textContent)+' · '+ttl;clock()}
function clock(){if(at!=null){var l=cdn(Math.max(0,Math.ceil((at-Date.now())/1000)));set('sn',l);D.title=tx('opens_in',0,l)+' · '+ttl}}
function tick(){
clock();if(busy||paused)return;
var l=Math.ceil((due-Date.now())/1000);
if(l<=0)return poll();
set('cd',tx('checking_in',l))}
function next(s){due=Date.now()+s*1000;busy=0;clearTimeout(pt);if(!paused)pt=setTimeout(poll,s*1000);tick()}
function halt(){clearInterval(tm);clearTimeout(pt);busy=1;$('pz').hidden=true;$('st').className='st paused'}
// Leaves for the page asked for (or the form's page, after a form), announced first.
function go(t,ms){halt();say(t);set('cd','');setTimeout(function(){location.replace(C.back||location.href)},ms)}
function poll(){
if(busy||paused)return;busy=1;clearTimeout(pt);set('cd',T.checking_now);
fetch(C.api+'position',{credentials:'same-origin',cache:'no-store'}).then(function(r){return r.json()}).then(function(d){
var s=d.state,k;
if(s=='limited'||s=='full'){say(s=='full'?T.full_retry:T.limited_retry);return next(wait=60)}
if(s=='none'&&arr){halt();return location.replace(C.cookies)}
if(s=='closed'||s=='over'){try{k=sessionStorage.wrc;sessionStorage.wrc=1}catch(e){}
if(!k)return go('',0);say(T.closed_retry);return next(wait=60)}
if(s=='admitted'||s=='open')return go(T.your_turn,1000);
if(s=='none'||s=='expired'){try{sessionStorage.wrlost=1}catch(e){}return go(T.place_lost,4000)}
if(s!='queued')throw 0;
arr=false;try{sessionStorage.wrc=''}catch(e){}
if(d.queue_length!=null)set('len',d.queue_length);
set('eta',eta(d.eta_seconds)+etaMax(d.eta_max_seconds));stamp();say('');
wait=d.refresh_seconds>0?+d.refresh_seconds:base;
if(d.starts_in!=null)wait=Math.min(wait,Math.max(1,d.starts_in));
show(d);next(wait)
}).catch(function(){say(T.connection_lost);wait=Math.min(60,wait*2);next(wait)})}
function pause(){
paused=!paused;var b=$('pz');b.setAttribute('aria-pressed',paused?'true':'false');b.textContent=paused?T.resume:T.pause;
$('st').className=paused?'st paused':'st';
if(paused){clearTimeout(pt);set('cd',T.paused)}else poll()}
// window.stop() also stopped the logo, if it was still loading: load it again.
var im=D.querySelector('img.logo');if(im&&!im.naturalWidth){var src=im.src;im.src='';im.src=src}
try{if(sessionStorage.wrlost){set('lost',T.place_lost_after);sessionStorage.wrlost=''}}catch(e){}
$('st').hidden=false;$('pz').onclick=pause;
show({starts_in:C.starts_in,draw:C.draw});tm=setInterval(tick,1000);
if(!navigator.cookieEnabled){halt();location.replace(C.cookies)}else next(arr?0:wait);
D.addEventListener('visibilitychange',function(){if(!D.hidden)tick()});
})();
